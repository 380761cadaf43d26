//! Builds small WebAssembly components in memory for tests: no guest toolchain needed.

/// Builds a component exporting the given WIT world, for tests (no guest toolchain needed).
/// Only scalar parameters and results are supported: the core functions just trap.
pub fn test_component(wit: &str) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, ExportKind, ExportSection, Function as CoreFunction, FunctionSection, Module,
        TypeSection, ValType,
    };
    use wit_parser::{Resolve, Type, WorldItem};
    let mut resolve = Resolve::default();
    let pkg = resolve.push_str("test.wit", wit).unwrap();
    let world = resolve.select_world(&[pkg], None).unwrap();
    let core = |ty: &Type| match ty {
        Type::S64 | Type::U64 => ValType::I64,
        Type::F32 => ValType::F32,
        Type::F64 => ValType::F64,
        _ => ValType::I32,
    };
    let (mut types, mut funcs, mut exports, mut code) = (
        TypeSection::new(),
        FunctionSection::new(),
        ExportSection::new(),
        CodeSection::new(),
    );
    let mut index = 0;
    for (key, item) in &resolve.worlds[world].exports {
        let WorldItem::Interface { id, .. } = item else {
            continue;
        };
        let iface_name = resolve.name_world_key(key);
        for f in resolve.interfaces[*id].functions.values() {
            let params: Vec<ValType> = f.params.iter().map(|p| core(&p.ty)).collect();
            let results: Vec<ValType> = f.result.iter().map(core).collect();
            types.ty().function(params, results);
            funcs.function(index);
            exports.export(&format!("{iface_name}#{}", f.name), ExportKind::Func, index);
            let mut body = CoreFunction::new(Vec::new());
            body.instructions().unreachable().end();
            code.function(&body);
            index += 1;
        }
    }
    let mut module = Module::new();
    module
        .section(&types)
        .section(&funcs)
        .section(&exports)
        .section(&code);
    let mut module = module.finish();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}
