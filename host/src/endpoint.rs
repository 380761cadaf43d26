//! A component's exported interfaces seen as oslo endpoints: each interface is one endpoint whose
//! version is its WIT package version and whose methods are its functions, named in snake_case.

use crate::capabilities::Capabilities;
use crate::lift_budget::FuelBound;
use crate::sandbox::{GuestState, Limits, Sandbox};
use anyhow::Context as _;
use fjord_surface::{describe_component, InterfaceDescription};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{ComponentExportIndex, InstancePre, Type};

/// One parameter of a method: its oslo keyword name and WIT type.
#[derive(Clone)]
pub struct Param {
    pub name: String,
    pub ty: Type,
}

/// One RPC method: a function exported by the component.
#[derive(Clone)]
pub struct Method {
    pub name: String,
    pub params: Vec<Param>,
    /// The function's result type, if it returns one.
    pub result: Option<Type>,
    pub index: ComponentExportIndex,
    /// What a call may lift from the guest: its result within the endpoint's `max_reply_kib`.
    pub fuel: FuelBound,
}

/// One exported interface of a component, served under a namespace and version.
pub struct Endpoint {
    pub file: PathBuf,
    /// The WIT export name, e.g. `fjord:calculator/calculator@1.0.0`: the failure module of its errors.
    pub interface: String,
    /// The oslo version it serves: `1.3.0` serves `1.3`, `1.3.2` serves `1.3.2`, none serves `1.0`.
    pub version: String,
    pub namespace: Option<String>,
    pub methods: HashMap<String, Method>,
    pub limits: Limits,
    /// What its guests may touch; nothing unless the config grants it.
    pub capabilities: Arc<Capabilities>,
    pub pre: InstancePre<GuestState>,
}

/// Loads a component file and returns one endpoint per exported interface. Functions exported at
/// the top level of the component form one more endpoint named after the file. What is served
/// (names, parameters, versions, what cannot cross RPC) comes from [`fjord_surface`], the same
/// description `fjord inspect` prints; wasmtime supplies the types values are converted with.
/// A function whose types cannot cross RPC makes the whole component unusable: the error names
/// file and function.
pub fn load(
    sandbox: &Sandbox,
    file: &Path,
    namespace: Option<&str>,
    limits: Limits,
) -> anyhow::Result<Vec<Endpoint>> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let surface = describe_component(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e} (build it for wasm32-wasip2)", file.display()))?;
    for interface in &surface.interfaces {
        for m in &interface.methods {
            if let Some(why) = &m.unsupported {
                anyhow::bail!("{}: {why}", where_(file, interface, &m.wit_name));
            }
        }
    }
    if surface.interfaces.iter().all(|i| i.methods.is_empty()) {
        anyhow::bail!("{}: the component exports no functions", file.display());
    }
    let component = sandbox.compile(file, &bytes)?;
    let pre = sandbox
        .prepare(&component)
        .map_err(|e| anyhow::anyhow!("{}: cannot be served: {e}", file.display()))?;

    let mut endpoints = Vec::new();
    for interface in &surface.interfaces {
        let instance = match &interface.export {
            Some(export) => Some(
                component
                    .get_export_index(None, export)
                    .ok_or_else(|| anyhow::anyhow!("{}: no export {export}", file.display()))?,
            ),
            None => None,
        };
        let mut methods = HashMap::new();
        for m in &interface.methods {
            let what = || where_(file, interface, &m.wit_name);
            let Some((ComponentItem::ComponentFunc(func), index)) =
                component.get_export(instance.as_ref(), &m.wit_name)
            else {
                anyhow::bail!("{}: not exported as a function", what());
            };
            let params: Vec<Param> = func
                .params()
                .zip(&m.params)
                .map(|((_, ty), (name, _))| Param {
                    name: name.clone(),
                    ty,
                })
                .collect();
            if params.len() != m.params.len() {
                anyhow::bail!("{}: its parameters do not match its WIT", what());
            }
            let mut results = func.results();
            let result = results.next();
            if results.next().is_some() {
                anyhow::bail!("{}: returns several values", what());
            }
            methods.insert(
                m.name.clone(),
                Method {
                    name: m.name.clone(),
                    params,
                    fuel: FuelBound::new(result.as_ref(), limits.max_reply_bytes),
                    result,
                    index,
                },
            );
        }
        let name = match &interface.export {
            Some(export) => export.clone(),
            None => file
                .file_stem()
                .map_or_else(|| "component".into(), |s| s.to_string_lossy().into_owned()),
        };
        endpoints.push(Endpoint {
            file: file.to_path_buf(),
            version: interface.oslo_version.clone(),
            interface: name,
            namespace: namespace.map(str::to_string),
            methods,
            limits,
            capabilities: Arc::default(),
            pre: pre.clone(),
        });
    }
    Ok(endpoints)
}

/// `file: function `f` of interface`, for errors about one function.
fn where_(file: &Path, interface: &InterfaceDescription, wit_name: &str) -> String {
    match &interface.export {
        Some(export) => format!("{}: function `{wit_name}` of {export}", file.display()),
        None => format!("{}: function `{wit_name}`", file.display()),
    }
}

/// Refuses two endpoints of one server that offer the same method in the same namespace and
/// version: oslo would silently call whichever comes first.
pub fn check_duplicates(endpoints: &[Endpoint]) -> anyhow::Result<()> {
    for (i, a) in endpoints.iter().enumerate() {
        for b in &endpoints[i + 1..] {
            if a.namespace != b.namespace || a.version != b.version {
                continue;
            }
            let mut shared: Vec<&String> = a
                .methods
                .keys()
                .filter(|m| b.methods.contains_key(*m))
                .collect();
            shared.sort_unstable();
            if let Some(method) = shared.first() {
                anyhow::bail!(
                    "method `{method}` is offered twice in namespace {} version {}: by {} of {} and by {} of {}",
                    a.namespace.as_deref().unwrap_or("(none)"),
                    a.version,
                    a.interface,
                    a.file.display(),
                    b.interface,
                    b.file.display()
                );
            }
        }
    }
    Ok(())
}
