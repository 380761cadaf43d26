//! A component's exported interfaces seen as oslo endpoints: each interface is one endpoint whose
//! version is its WIT package version and whose methods are its functions, named in snake_case.

use crate::capabilities::Capabilities;
use crate::convert::unsupported;
use crate::sandbox::{GuestState, Limits, Sandbox};
use fjord_client::names::to_snake;
use fjord_client::version::served_version;
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

/// The oslo version an exported interface serves, from the package version in its export name
/// (`fjord:calculator/calculator@1.0.0` serves `1.0`).
pub fn oslo_version(export_name: &str) -> String {
    let package_version = export_name
        .rsplit_once('@')
        .and_then(|(_, v)| semver::Version::parse(v).ok());
    served_version(package_version.as_ref())
}

/// Loads a component file and returns one endpoint per exported interface. Functions exported at
/// the top level of the component form one more endpoint named after the file. A function whose
/// types cannot cross RPC makes the whole component unusable: the error names file and function.
pub fn load(
    sandbox: &Sandbox,
    file: &Path,
    namespace: Option<&str>,
    limits: Limits,
) -> anyhow::Result<Vec<Endpoint>> {
    let component = sandbox.load(file)?;
    let pre = sandbox
        .prepare(&component)
        .map_err(|e| anyhow::anyhow!("{}: cannot be served: {e}", file.display()))?;
    let engine = sandbox.engine();
    let ty = component.component_type();

    let mut interfaces: Vec<(String, Vec<(String, Method)>)> = Vec::new();
    let mut top_level = Vec::new();
    for (export_name, item) in ty.exports(engine) {
        match item.ty {
            ComponentItem::ComponentInstance(instance) => {
                if export_name.starts_with("wasi:") {
                    continue;
                }
                let Some(instance_index) = component.get_export_index(None, export_name) else {
                    continue;
                };
                let mut methods = Vec::new();
                for (func_name, func_item) in instance.exports(engine) {
                    // `[constructor]r`, `[method]r.m`, `[static]r.f` belong to a resource, which
                    // RPC cannot hold; a function that takes or returns one is refused below.
                    if func_name.starts_with('[') {
                        continue;
                    }
                    if let ComponentItem::ComponentFunc(func) = func_item.ty {
                        let index = component
                            .get_export_index(Some(&instance_index), func_name)
                            .ok_or_else(|| {
                                anyhow::anyhow!(
                                    "{}: export {export_name}/{func_name} has no index",
                                    file.display()
                                )
                            })?;
                        methods.push(method(file, export_name, func_name, &func, index)?);
                    }
                }
                interfaces.push((export_name.to_string(), methods));
            }
            ComponentItem::ComponentFunc(func) => {
                if let Some(index) = component.get_export_index(None, export_name) {
                    top_level.push(method(file, "", export_name, &func, index)?);
                }
            }
            _ => {}
        }
    }
    if !top_level.is_empty() {
        let stem = file
            .file_stem()
            .map_or_else(|| "component".into(), |s| s.to_string_lossy().into_owned());
        interfaces.push((stem, top_level));
    }
    if interfaces.is_empty() {
        anyhow::bail!("{}: the component exports no functions", file.display());
    }

    Ok(interfaces
        .into_iter()
        .map(|(interface, methods)| Endpoint {
            file: file.to_path_buf(),
            version: oslo_version(&interface),
            interface,
            namespace: namespace.map(str::to_string),
            methods: methods.into_iter().collect(),
            limits,
            capabilities: Arc::default(),
            pre: pre.clone(),
        })
        .collect())
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

fn method(
    file: &Path,
    interface: &str,
    func_name: &str,
    func: &wasmtime::component::types::ComponentFunc,
    index: ComponentExportIndex,
) -> anyhow::Result<(String, Method)> {
    let where_ = || {
        if interface.is_empty() {
            format!("{}: function `{func_name}`", file.display())
        } else {
            format!("{}: function `{func_name}` of {interface}", file.display())
        }
    };
    if func.async_() {
        anyhow::bail!("{}: async functions are not supported yet", where_());
    }
    let mut params = Vec::new();
    for (name, ty) in func.params() {
        if let Some(why) = unsupported(&ty) {
            anyhow::bail!(
                "{}: parameter `{name}` is {why}, which cannot be passed over RPC",
                where_()
            );
        }
        params.push(Param {
            name: to_snake(name),
            ty,
        });
    }
    let results: Vec<Type> = func.results().collect();
    if results.len() > 1 {
        anyhow::bail!("{}: returns several values", where_());
    }
    let result = results.into_iter().next();
    if let Some(why) = result.as_ref().and_then(unsupported) {
        anyhow::bail!(
            "{}: returns {why}, which cannot be passed over RPC",
            where_()
        );
    }
    let name = to_snake(func_name);
    Ok((
        name.clone(),
        Method {
            name,
            params,
            result,
            index,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::oslo_version;

    #[test]
    fn package_versions_map_to_oslo_versions() {
        assert_eq!(oslo_version("fjord:calculator/calculator@1.0.0"), "1.0");
        assert_eq!(oslo_version("a:b/c@1.3.0"), "1.3");
        assert_eq!(oslo_version("a:b/c@1.3.2"), "1.3.2");
        assert_eq!(oslo_version("a:b/c@2.1.0-rc1"), "2.1");
        assert_eq!(oslo_version("a:b/c"), "1.0");
    }
}
