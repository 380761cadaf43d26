//! `fjord-codegen`: typed fjord RPC clients generated from the WIT an endpoint implements.
//!
//! Use it through its re-exports: `fjord_client::generate!` (async, over
//! `fjord_client::RpcClient`) and `fjord_guest::generate_client!` (synchronous, inside an
//! endpoint, over the `fjord:endpoint/rpc` import). Both read the WIT with `fjord-surface`, the
//! same description `fjord inspect` prints and `fjord-host` serves, so the methods, names,
//! types and default version of the client are those of the endpoint.
//!
//! ```ignore
//! fjord_client::generate!({ path: "../wit/calculator" });
//!
//! let sum = Calculator::new(&client).add(2, 3).await?;
//! ```
//!
//! See `codegen/README.md` for the generated shapes and how each WIT type is encoded.

// Nothing from a WIT file may panic the compiler (as in the rest of fjord).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod gen;

use proc_macro::TokenStream;
use proc_macro2::Span;
use std::path::PathBuf;
use syn::parse::{Parse, ParseStream};
use syn::{braced, Ident, LitStr, Token};

/// Generates a typed async client for every interface a WIT world exports (the client side).
/// Re-exported and documented as `fjord_client::generate!`.
///
/// ```ignore
/// fjord_client::generate!({ path: "../wit/calculator" });
/// ```
#[proc_macro]
pub fn generate(input: TokenStream) -> TokenStream {
    expand(input, gen::Mode::Client)
}

/// Generates typed synchronous stubs over the `rpc` import for every interface a WIT world
/// exports (inside an endpoint). Re-exported and documented as `fjord_guest::generate_client!`.
///
/// ```ignore
/// fjord_guest::generate_client!({ path: "../../wit/compute" });
/// ```
#[proc_macro]
pub fn generate_guest(input: TokenStream) -> TokenStream {
    expand(input, gen::Mode::Guest)
}

/// `{ path: "...", world: "..." }` (the braces may be left out).
struct Options {
    path: LitStr,
    world: Option<LitStr>,
}

impl Parse for Options {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let body;
        let input = if input.peek(syn::token::Brace) {
            braced!(body in input);
            &body
        } else {
            input
        };
        let (mut path, mut world) = (None, None);
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            input.parse::<Token![:]>()?;
            let value: LitStr = input.parse()?;
            let slot = match key.to_string().as_str() {
                "path" => &mut path,
                "world" => &mut world,
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown option `{other}`: expected `path` or `world`"),
                    ))
                }
            };
            if slot.replace(value).is_some() {
                return Err(syn::Error::new(key.span(), format!("`{key}` given twice")));
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        let path = path.ok_or_else(|| {
            syn::Error::new(
                Span::call_site(),
                "missing `path`: the WIT directory or file, relative to the crate's Cargo.toml",
            )
        })?;
        Ok(Options { path, world })
    }
}

fn expand(input: TokenStream, mode: gen::Mode) -> TokenStream {
    match try_expand(input, mode) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn try_expand(input: TokenStream, mode: gen::Mode) -> syn::Result<proc_macro2::TokenStream> {
    let options: Options = syn::parse(input)?;
    let span = options.path.span();
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = root.join(options.path.value());
    let world = options.world.as_ref().map(LitStr::value);
    let (description, files) = fjord_surface::describe_wit_path(&path, world.as_deref())
        .map_err(|e| syn::Error::new(span, format!("{}: {e}", path.display())))?;
    let items = gen::generate(&description, mode).map_err(|e| syn::Error::new(span, e.0))?;
    // Read again by the compiler, so that cargo rebuilds when a WIT file changes.
    let tracked = files
        .iter()
        .filter_map(|f| f.canonicalize().ok())
        .filter_map(|f| f.to_str().map(str::to_string));
    Ok(quote::quote! {
        #(const _: &str = include_str!(#tracked);)*
        #items
    })
}
