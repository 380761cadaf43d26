//! `fjord new endpoint NAME`: a ready endpoint crate, as `spin new` and `cargo generate` make
//! one. The crate builds with one command (`cargo build --release --target wasm32-wasip2` in its
//! directory) into a component that `fjord-host` serves, and the command prints the config line
//! that serves it.
//!
//! ```
//! let files = fjord_cli::new::rust_endpoint("hello-world", std::path::Path::new("/src/fjord/guest-sdk")).unwrap();
//! assert!(files.iter().any(|(path, _)| path == "wit/hello-world.wit"));
//! ```
//!
//! `--lang python` makes a Python endpoint instead (`app.py` over the guest SDK `fjord_guest`, its
//! WIT world with `fjord:endpoint` under `wit/deps/`), built by the checkout's
//! `scripts/build-python` (componentize-py):
//!
//! ```
//! let files = fjord_cli::new::python_endpoint("hello-world").unwrap();
//! assert!(files.iter().any(|(path, _)| path == "app.py"));
//! assert!(files.iter().any(|(path, _)| path == "wit/deps/endpoint/endpoint.wit"));
//! ```

use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};

/// The languages a template exists for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
}

impl std::str::FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rust" => Ok(Lang::Rust),
            "python" => Ok(Lang::Python),
            other => Err(format!("unknown language {other:?}: rust or python")),
        }
    }
}

/// The wit-bindgen the guest SDK is built with: the template's crate must use the same.
const WIT_BINDGEN: &str = "0.46";

/// Checks that `name` can be a WIT package, interface and crate name: lowercase words of
/// letters and digits joined by `-`, each starting with a letter.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let words_ok = !name.is_empty()
        && name.split('-').all(|w| {
            w.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !words_ok || name.len() > 64 {
        bail!(
            "{name:?} cannot name an endpoint: use lowercase words of letters and digits joined \
             by '-', each starting with a letter (like hello-world), at most 64 characters"
        );
    }
    Ok(())
}

/// The files of a Rust endpoint crate named `name`, as (relative path, contents).
pub fn rust_endpoint(name: &str, fjord_guest: &Path) -> anyhow::Result<Vec<(String, String)>> {
    check_name(name)?;
    let snake = name.replace('-', "_");
    let camel = camel(name);
    let guest = toml_string(&fjord_guest.display().to_string());
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
fjord-guest = {{ path = {guest} }}
wit-bindgen = "{WIT_BINDGEN}"

[profile.release]
opt-level = "s"

# A crate of its own, even when made inside another workspace.
[workspace]
"#
    );
    let wit = format!(
        "{}
world {name}-endpoint {{
  export {name};
}}
",
        interface_wit(name, "")
    );
    let lib = format!(
        r#"//! The {name} endpoint, served by fjord-host as oslo.messaging RPC methods.
//!
//! Build: `cargo build --release --target wasm32-wasip2`
//! (gives `target/wasm32-wasip2/release/{snake}.wasm`).

wit_bindgen::generate!({{
    world: "{name}-endpoint",
    path: "wit",
}});

use exports::local::{snake}::{snake}::{{AddError, Guest}};

struct {camel};

impl Guest for {camel} {{
    fn hello(name: String) -> String {{
        fjord_guest::info!(
            "hello from {{}}",
            fjord_guest::context::user().unwrap_or_else(|| "anonymous".into())
        );
        format!("Hello, {{name}}!")
    }}

    fn add(a: i64, b: i64) -> Result<i64, AddError> {{
        a.checked_add(b).ok_or(AddError::Overflow)
    }}
}}

export!({camel});
"#
    );
    let readme = format!(
        r#"# {name}

A fjord endpoint. Build it, serve it, call it:

```sh
cargo build --release --target wasm32-wasip2
# add to the [[server]] of your fjord-host config:
#   endpoints = [{line}]
fjord call --topic <topic> hello name=world
```

Change `wit/{name}.wit` and `src/lib.rs` together: the WIT is what callers see.
"#,
        line = config_line(name, Path::new(name))
    );
    Ok(vec![
        ("Cargo.toml".into(), cargo),
        (format!("wit/{name}.wit"), wit),
        ("src/lib.rs".into(), lib),
        ("README.md".into(), readme),
        (".gitignore".into(), "/target\n".into()),
    ])
}

/// `fjord:endpoint`, copied into a Python template: componentize-py needs every package of the
/// world it builds, and the template must build outside this checkout too.
const ENDPOINT_WIT: &str = include_str!("../../wit/endpoint/endpoint.wit");

/// `hello-world` as a Python class name (`HelloWorld`), which is also what componentize-py calls
/// the class implementing the exported interface `hello-world`.
fn camel(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The template's WIT package and interface, the same in every language (`note` ends the
/// package's doc comment); each template adds its world.
fn interface_wit(name: &str, note: &str) -> String {
    format!(
        r#"/// The {name} endpoint: oslo callers reach each function as an RPC method, version 1.0
/// (the package version; a caller asking for no version asks for 1.0). Keyword arguments are
/// named as the parameters.{note}
package local:{name}@1.0.0;

interface {name} {{
  /// A greeting: `client.call(ctx, 'hello', name='world')` returns "Hello, world!".
  hello: func(name: string) -> string;
  /// `a + b`; an overflow is raised as the exception `Overflow`.
  add: func(a: s64, b: s64) -> result<s64, add-error>;

  variant add-error {{
    overflow,
  }}
}}
"#
    )
}

/// The files of a Python endpoint named `name`, as (relative path, contents): `app.py` over the
/// guest SDK, `wit/NAME.wit` (the interface and a world that includes `fjord:endpoint/imports`),
/// `wit/deps/endpoint/endpoint.wit`, a README and a `.gitignore`.
pub fn python_endpoint(name: &str) -> anyhow::Result<Vec<(String, String)>> {
    check_name(name)?;
    let snake = name.replace('-', "_");
    let class = camel(name);
    let wit = format!(
        "{}
/// componentize-py builds one world: the interface exported, what fjord-host gives imported.
world {name}-endpoint {{
  include fjord:endpoint/imports@0.1.0;
  export {name};
}}
",
        interface_wit(
            name,
            " This WIT is what you write by hand; `app.py` implements it."
        )
    );
    let app = format!(
        r#""""The {name} endpoint, served by fjord-host as oslo.messaging RPC methods.

Build (in the fjord checkout): scripts/build-python --out {name}/{name}.wasm {name}
"""

import logging

from fjord_guest import Err, RemoteError, endpoint
from wit_world.exports.{snake} import AddError_Overflow

LOG = logging.getLogger(__name__)

S64_MAX = (1 << 63) - 1


@endpoint
class {class}:
    """componentize-py serves the class named after the interface, `{name}` -> `{class}`."""

    def hello(self, ctx, name):
        LOG.info("hello from %s", ctx.user or "anonymous")   # to the host's log
        if not name:
            raise RemoteError.builtin("ValueError", "name must not be empty")
        return f"Hello, {{name}}!"

    def add(self, ctx, a, b):
        if not -S64_MAX - 1 <= a + b <= S64_MAX:
            raise Err(AddError_Overflow())                    # the caller gets Overflow
        return a + b
"#
    );
    let readme = format!(
        r#"# {name}

A fjord endpoint in Python. Build it (in the fjord checkout, which has componentize-py in `.venv`
after `scripts/setup`), serve it, call it:

```sh
scripts/build-python --out {name}/{name}.wasm {name}
# add to the [[server]] of your fjord-host config:
#   endpoints = [{line}]
fjord call --topic <topic> hello name=world
```

Change `wit/{name}.wit` and `app.py` together: the WIT is what callers see. `wit/deps/endpoint`
is fjord's `fjord:endpoint` (context, log, failure), which `fjord_guest` uses.
An uncaught exception reaches the caller as a Python server's would (a `ZeroDivisionError` is
raised as itself by oslo's client); its traceback goes to the host's log.
"#,
        line = python_config_line(name, Path::new(name))
    );
    Ok(vec![
        ("app.py".into(), app),
        (format!("wit/{name}.wit"), wit),
        (
            "wit/deps/endpoint/endpoint.wit".into(),
            ENDPOINT_WIT.to_string(),
        ),
        ("README.md".into(), readme),
        (
            ".gitignore".into(),
            "*.wasm\n*.wasm.digest\n__pycache__/\n".into(),
        ),
    ])
}

/// The `endpoints` item that serves the Python endpoint made in `dir` (built with
/// `scripts/build-python --out DIR/NAME.wasm DIR`).
pub fn python_config_line(name: &str, dir: &Path) -> String {
    toml_string(&dir.join(format!("{name}.wasm")).display().to_string())
}

/// The `endpoints` item that serves the crate made in `dir`.
pub fn config_line(name: &str, dir: &Path) -> String {
    let wasm = dir
        .join("target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    toml_string(&wasm.display().to_string())
}

fn toml_string(s: &str) -> String {
    // A TOML basic string is JSON-compatible for these characters.
    serde_json::Value::String(s.to_string()).to_string()
}

/// Writes the template for `lang` into `parent/name` (which must not exist) and returns the
/// directory made.
pub fn write(lang: Lang, name: &str, parent: &Path, fjord_guest: &Path) -> anyhow::Result<PathBuf> {
    let files = match lang {
        Lang::Rust => rust_endpoint(name, fjord_guest)?,
        Lang::Python => python_endpoint(name)?,
    };
    let dir = parent.join(name);
    if dir.exists() {
        bail!(
            "{} already exists: choose another name or directory",
            dir.display()
        );
    }
    for (path, text) in files {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["hello", "hello-world", "a1-b2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Hello", "1abc", "a--b", "-a", "a_b", "a b", "héllo"] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains("cannot name an endpoint"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_config_line_names_the_wasm() {
        assert_eq!(
            config_line("hello-world", Path::new("/tmp/hello-world")),
            "\"/tmp/hello-world/target/wasm32-wasip2/release/hello_world.wasm\""
        );
    }

    #[test]
    fn the_python_template_names_its_class_after_the_interface() {
        let files = python_endpoint("hello-world").unwrap();
        let file = |name: &str| {
            files
                .iter()
                .find(|(path, _)| path == name)
                .map(|(_, text)| text.as_str())
                .unwrap_or_else(|| panic!("no {name}"))
        };
        assert!(file("app.py").contains("class HelloWorld:"));
        assert!(file("app.py").contains("from wit_world.exports.hello_world import"));
        assert!(file("wit/hello-world.wit").contains("include fjord:endpoint/imports@0.1.0;"));
        assert!(file("wit/deps/endpoint/endpoint.wit").contains("package fjord:endpoint@0.1.0;"));
        assert!(
            file("README.md").contains("scripts/build-python --out hello-world/hello-world.wasm")
        );
        assert_eq!(
            python_config_line("hello-world", Path::new("/tmp/hello-world")),
            "\"/tmp/hello-world/hello-world.wasm\""
        );
        assert!(python_endpoint("Bad").is_err());
    }
}
