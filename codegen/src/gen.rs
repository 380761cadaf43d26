//! The generator itself: a [`ComponentDescription`] (fjord-surface's one description of a WIT
//! interface) in, Rust items out. A plain function over `proc_macro2` tokens, so it is tested
//! without a compiler run.

use fjord_oslo::names::{to_camel, to_snake};
use fjord_surface::{
    ComponentDescription, InterfaceDescription, TypeDescription, TypeKind, WitType,
};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};
use std::collections::{BTreeMap, BTreeSet};

/// Which side the client runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Async, over `fjord_client::RpcClient`; errors are `fjord_client::RpcError`.
    Client,
    /// Synchronous, inside an endpoint, over `fjord_guest::rpc::Client` (the `rpc` import);
    /// errors are `fjord_guest::rpc::Error`.
    Guest,
}

impl Mode {
    fn root(self) -> TokenStream {
        match self {
            Mode::Client => quote!(::fjord_client),
            Mode::Guest => quote!(::fjord_guest),
        }
    }

    fn serde_crate(self) -> &'static str {
        match self {
            Mode::Client => "::fjord_client::__codegen::serde",
            Mode::Guest => "::fjord_guest::__codegen::serde",
        }
    }
}

/// Why the WIT cannot become a client; the macro reports it as a compile error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenError(pub String);

impl std::fmt::Display for GenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, GenError>;

/// The Rust items for every exported interface of `description`: per interface, a module named
/// after it (snake_case) with its types, the client struct (UpperCamelCase) and its prepare
/// builder, and a `pub use` of the client struct beside the module. Functions exported at the
/// top level of a world (outside any interface) are left out.
pub fn generate(description: &ComponentDescription, mode: Mode) -> Result<TokenStream> {
    let mut out = TokenStream::new();
    let mut modules = BTreeSet::new();
    for iface in &description.interfaces {
        if iface.export.is_none() {
            continue;
        }
        let module = ident(&to_snake(&iface.name));
        if !modules.insert(module.to_string()) {
            return Err(GenError(format!(
                "two exported interfaces are named `{}`",
                iface.name
            )));
        }
        let client = camel_ident(&iface.name);
        let items = Interface::new(iface, mode)?.items()?;
        let module_doc = doc(&format!(
            "The typed client of `{}` ([`{client}`]) and its types, generated from its WIT.",
            iface.export.as_deref().unwrap_or(&iface.name)
        ));
        out.extend(quote! {
            #module_doc
            #[allow(dead_code, clippy::all)]
            pub mod #module {
                #items
            }
            pub use #module::#client;
        });
    }
    Ok(out)
}

/// A snake_case or kebab-case WIT name as a Rust identifier (`r#type` for a keyword, `self_`
/// for the keywords that cannot be raw).
pub fn ident(name: &str) -> Ident {
    let name = to_snake(name);
    match name.as_str() {
        "self" | "super" | "crate" | "Self" | "_" => format_ident!("{}_", name),
        _ if syn::parse_str::<Ident>(&name).is_ok() => Ident::new(&name, Span::call_site()),
        _ => Ident::new_raw(&name, Span::call_site()),
    }
}

/// `dark-green` / `dark_green` → `DarkGreen`.
fn camel_ident(name: &str) -> Ident {
    ident(&to_camel(name))
}

fn docs(text: Option<&str>) -> TokenStream {
    let lines = text.unwrap_or_default().lines().map(|l| format!(" {l}"));
    quote!(#(#[doc = #lines])*)
}

fn doc(text: &str) -> TokenStream {
    docs(Some(text))
}

/// One interface being generated.
struct Interface<'a> {
    iface: &'a InterfaceDescription,
    mode: Mode,
    /// Every type the module defines, by WIT name: the interface's own and those it uses.
    types: BTreeMap<&'a str, &'a TypeDescription>,
    /// Whether some type holds a `result` inside it (then `WitResult` is generated).
    nested_result: std::cell::Cell<bool>,
}

impl<'a> Interface<'a> {
    fn new(iface: &'a InterfaceDescription, mode: Mode) -> Result<Interface<'a>> {
        let mut types: BTreeMap<&str, &TypeDescription> = BTreeMap::new();
        for t in iface.used_types.iter().chain(&iface.type_defs) {
            // `use x.{t}` is an alias of the same name for the type of another interface,
            // generated under that name already.
            if is_self_alias(t) {
                continue;
            }
            if let Some(before) = types.insert(&t.name, t) {
                if before != t {
                    return Err(GenError(format!(
                        "interface `{}`: two different types are named `{}` ({} and {})",
                        iface.name,
                        t.name,
                        before.owner.as_deref().unwrap_or("?"),
                        t.owner.as_deref().unwrap_or("?"),
                    )));
                }
            }
        }
        Ok(Interface {
            iface,
            mode,
            types,
            nested_result: std::cell::Cell::new(false),
        })
    }

    fn items(&self) -> Result<TokenStream> {
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut claim = |rust: String, what: String| match names.insert(rust.clone(), what.clone())
        {
            Some(other) => Err(GenError(format!(
                "interface `{}`: {what} and {other} would both be named `{rust}` in Rust",
                self.iface.name
            ))),
            None => Ok(()),
        };
        let client = to_camel(&self.iface.name);
        claim(client.clone(), "the client".into())?;
        claim(
            format!("{client}Prepare"),
            "the client's prepare builder".into(),
        )?;

        // Functions first: an unsupported one is the error to report, before its types.
        let methods = self.methods()?;
        let mut types = TokenStream::new();
        for t in self.types.values() {
            // A type RPC cannot carry (holding a resource...) is only reachable from functions,
            // refused above; it is left out.
            let Ok(item) = self.type_item(t) else {
                continue;
            };
            claim(
                camel_ident(&t.name).to_string(),
                format!("type `{}`", t.name),
            )?;
            types.extend(item);
        }
        let support = if self.nested_result.get() {
            claim("WitResult".into(), "the nested-result type".into())?;
            self.wit_result()
        } else {
            TokenStream::new()
        };
        Ok(quote!(#types #support #methods))
    }

    /// The Rust type of a WIT type in a field, payload or result position.
    fn rust_type(&self, ty: &WitType) -> Result<TokenStream> {
        Ok(match ty {
            WitType::Bool => quote!(bool),
            WitType::U8 => quote!(u8),
            WitType::U16 => quote!(u16),
            WitType::U32 => quote!(u32),
            WitType::U64 => quote!(u64),
            WitType::S8 => quote!(i8),
            WitType::S16 => quote!(i16),
            WitType::S32 => quote!(i32),
            WitType::S64 => quote!(i64),
            WitType::F32 => quote!(f32),
            WitType::F64 => quote!(f64),
            WitType::Char => quote!(char),
            WitType::String => quote!(::std::string::String),
            WitType::List(t) => {
                let t = self.rust_type(t)?;
                quote!(::std::vec::Vec<#t>)
            }
            // serde reads and writes arrays of up to 32 items.
            WitType::FixedList(t, n) if *n <= 32 => {
                let t = self.rust_type(t)?;
                let n = *n as usize;
                quote!([#t; #n])
            }
            WitType::FixedList(t, _) => {
                let t = self.rust_type(t)?;
                quote!(::std::vec::Vec<#t>)
            }
            WitType::Option(t) => {
                let t = self.rust_type(t)?;
                quote!(::core::option::Option<#t>)
            }
            WitType::Result { ok, err } => {
                self.nested_result.set(true);
                let ok = self.payload_type(ok.as_deref())?;
                let err = self.payload_type(err.as_deref())?;
                quote!(WitResult<#ok, #err>)
            }
            WitType::Tuple(types) => {
                let types = types
                    .iter()
                    .map(|t| self.rust_type(t))
                    .collect::<Result<Vec<_>>>()?;
                quote!((#(#types,)*))
            }
            WitType::Map(k, v) if **k == WitType::String => {
                let v = self.rust_type(v)?;
                quote!(::std::collections::BTreeMap<::std::string::String, #v>)
            }
            WitType::Named { name, .. } => {
                if !self.types.contains_key(name.as_str()) {
                    return Err(GenError(format!("the type `{name}` is not described")));
                }
                let name = camel_ident(name);
                quote!(#name)
            }
            other => return Err(GenError(format!("`{other}` cannot be passed over RPC"))),
        })
    }

    fn payload_type(&self, ty: Option<&WitType>) -> Result<TokenStream> {
        match ty {
            Some(t) => self.rust_type(t),
            None => Ok(quote!(())),
        }
    }

    /// The type a name refers to, through aliases.
    fn resolve(&self, ty: &'a WitType) -> &'a WitType {
        let mut ty = ty;
        for _ in 0..64 {
            match ty {
                WitType::Named { name, .. } => {
                    match self.types.get(name.as_str()).map(|t| &t.kind) {
                        Some(TypeKind::Alias(target))
                        | Some(TypeKind::Other { ty: target, .. }) => ty = target,
                        _ => return ty,
                    }
                }
                _ => return ty,
            }
        }
        ty
    }

    /// Passed by value: primitives, and enums and flags (generated `Copy`).
    fn is_copy(&self, ty: &'a WitType) -> bool {
        match self.resolve(ty) {
            WitType::Named { name, .. } => matches!(
                self.types.get(name.as_str()).map(|t| &t.kind),
                Some(TypeKind::Enum(_)) | Some(TypeKind::Flags(_))
            ),
            WitType::String
            | WitType::List(_)
            | WitType::FixedList(..)
            | WitType::Option(_)
            | WitType::Result { .. }
            | WitType::Tuple(_)
            | WitType::Map(..)
            | WitType::Handle { .. }
            | WitType::Future(_)
            | WitType::Stream(_)
            | WitType::Other(_)
            | WitType::ErrorContext => false,
            _ => true,
        }
    }

    /// The type of a parameter: copies by value, `&str` for strings, `&[T]` for lists,
    /// `Option<&str>` / `Option<&T>` for options of those, `&T` for the rest.
    fn param_type(&self, ty: &'a WitType) -> Result<TokenStream> {
        if self.is_copy(ty) {
            return self.rust_type(ty);
        }
        Ok(match ty {
            WitType::String => quote!(&str),
            WitType::List(t) => {
                let t = self.rust_type(t)?;
                quote!(&[#t])
            }
            WitType::Option(t) if self.is_copy(t) => self.rust_type(ty)?,
            WitType::Option(t) if **t == WitType::String => quote!(::core::option::Option<&str>),
            WitType::Option(t) => {
                let t = self.rust_type(t)?;
                quote!(::core::option::Option<&#t>)
            }
            other => {
                let t = self.rust_type(other)?;
                quote!(&#t)
            }
        })
    }

    fn serde_attr(&self) -> TokenStream {
        let krate = self.mode.serde_crate();
        quote!(#[serde(crate = #krate)])
    }

    fn derive_serde(&self) -> TokenStream {
        let root = self.mode.root();
        let serde = self.serde_attr();
        quote! {
            #[derive(#root::__codegen::serde::Serialize, #root::__codegen::serde::Deserialize)]
            #serde
        }
    }

    /// One named type as a Rust item, encoded exactly as fjord-host's `convert.rs` reads and
    /// writes it.
    fn type_item(&self, t: &TypeDescription) -> Result<TokenStream> {
        let name = camel_ident(&t.name);
        let origin = match &t.owner {
            Some(owner) => format!("\n\nWIT: `{}` of `{owner}`.", t.name),
            None => format!("\n\nWIT: `{}`.", t.name),
        };
        let docs = docs(Some(&format!(
            "{}{origin}",
            t.docs.as_deref().unwrap_or("")
        )));
        let serde = self.derive_serde();
        Ok(match &t.kind {
            TypeKind::Record(fields) => {
                let fields = fields
                    .iter()
                    .map(|(field, ty)| {
                        let id = ident(field);
                        let ty = self.rust_type(ty)?;
                        let field_doc = doc(&format!("`{field}`"));
                        Ok(quote!(#field_doc #[serde(rename = #field)] pub #id: #ty,))
                    })
                    .collect::<Result<Vec<_>>>()?;
                quote! {
                    #docs
                    #[derive(Debug, Clone, PartialEq)]
                    #serde
                    pub struct #name { #(#fields)* }
                }
            }
            TypeKind::Enum(cases) => {
                let cases = cases.iter().map(|case| {
                    let id = camel_ident(case);
                    let case_doc = doc(&format!("`{case}`"));
                    quote!(#case_doc #[serde(rename = #case)] #id,)
                });
                quote! {
                    #docs
                    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
                    #serde
                    pub enum #name { #(#cases)* }
                }
            }
            TypeKind::Variant(cases) => {
                let cases = cases
                    .iter()
                    .map(|(case, payload)| {
                        let id = camel_ident(case);
                        let case_doc = doc(&format!("`{case}`"));
                        Ok(match payload {
                            Some(ty) => {
                                let ty = self.rust_type(ty)?;
                                quote!(#case_doc #[serde(rename = #case)] #id(#ty),)
                            }
                            None => quote!(#case_doc #[serde(rename = #case)] #id,),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                quote! {
                    #docs
                    #[derive(Debug, Clone, PartialEq)]
                    #serde
                    pub enum #name { #(#cases)* }
                }
            }
            TypeKind::Flags(flags) => self.flags_item(&name, &docs, flags),
            TypeKind::Alias(ty) | TypeKind::Other { ty, .. } => {
                let ty = self.rust_type(ty)?;
                quote!(#docs pub type #name = #ty;)
            }
        })
    }

    /// Flags: a struct of bools, on the wire an array of the names of the flags set.
    fn flags_item(&self, name: &Ident, docs: &TokenStream, flags: &[String]) -> TokenStream {
        let root = self.mode.root();
        let serde = quote!(#root::__codegen::serde);
        let ids: Vec<Ident> = flags.iter().map(|f| ident(f)).collect();
        let field_docs = flags.iter().map(|f| doc(&format!("`{f}` is set.")));
        quote! {
            #docs
            #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
            pub struct #name { #(#field_docs pub #ids: bool,)* }

            impl #serde::Serialize for #name {
                fn serialize<S: #serde::Serializer>(&self, serializer: S) -> ::core::result::Result<S::Ok, S::Error> {
                    let mut names: ::std::vec::Vec<&str> = ::std::vec::Vec::new();
                    #(if self.#ids { names.push(#flags); })*
                    serializer.collect_seq(names)
                }
            }

            impl<'de> #serde::Deserialize<'de> for #name {
                fn deserialize<D: #serde::Deserializer<'de>>(deserializer: D) -> ::core::result::Result<Self, D::Error> {
                    let names: ::std::vec::Vec<::std::string::String> = #serde::Deserialize::deserialize(deserializer)?;
                    #[allow(unused_mut)]
                    let mut flags = #name::default();
                    for name in names {
                        match name.as_str() {
                            #(#flags => flags.#ids = true,)*
                            other => return ::core::result::Result::Err(
                                <D::Error as #serde::de::Error>::unknown_variant(other, &[#(#flags),*]),
                            ),
                        }
                    }
                    ::core::result::Result::Ok(flags)
                }
            }
        }
    }

    /// `result<T, E>` inside another type, as `{"ok": T}` / `{"err": E}` (serde's own `Result`
    /// would be `{"Ok": T}`).
    fn wit_result(&self) -> TokenStream {
        let serde = self.derive_serde();
        quote! {
            /// A WIT `result<T, E>` held in another type (a field, a list item, a case payload),
            /// encoded as fjord does: `{"ok": value}` or `{"err": value}`. Converts to and from
            /// Rust's `Result`.
            ///
            /// ```ignore
            /// let r: Result<u8, String> = WitResult::Ok(1).into();
            /// ```
            #[derive(Debug, Clone, PartialEq)]
            #serde
            pub enum WitResult<T, E> {
                /// `{"ok": value}`
                #[serde(rename = "ok")]
                Ok(T),
                /// `{"err": value}`
                #[serde(rename = "err")]
                Err(E),
            }

            impl<T, E> ::core::convert::From<WitResult<T, E>> for ::core::result::Result<T, E> {
                fn from(r: WitResult<T, E>) -> Self {
                    match r {
                        WitResult::Ok(v) => ::core::result::Result::Ok(v),
                        WitResult::Err(e) => ::core::result::Result::Err(e),
                    }
                }
            }

            impl<T, E> ::core::convert::From<::core::result::Result<T, E>> for WitResult<T, E> {
                fn from(r: ::core::result::Result<T, E>) -> Self {
                    match r {
                        ::core::result::Result::Ok(v) => WitResult::Ok(v),
                        ::core::result::Result::Err(e) => WitResult::Err(e),
                    }
                }
            }
        }
    }

    /// The client struct, its prepare builder and one method (and one `cast_` method) per
    /// function.
    fn methods(&self) -> Result<TokenStream> {
        let iface = self.iface;
        let root = self.mode.root();
        let client = camel_ident(&iface.name);
        let prepare = format_ident!("{}Prepare", client);
        let version = &iface.oslo_version;
        let export = iface.export.as_deref().unwrap_or(&iface.name);
        let mut reserved: BTreeMap<String, String> = ["new", "prepare", "rpc_client"]
            .iter()
            .map(|n| (n.to_string(), "a method of the client itself".to_string()))
            .collect();
        let mut methods = TokenStream::new();
        for m in &iface.methods {
            let what = format!("function `{}` of `{export}`", m.wit_name);
            if let Some(why) = &m.unsupported {
                return Err(GenError(format!("{what}: {why}")));
            }
            let call = ident(&m.name);
            let cast = format_ident!("cast_{}", m.name);
            for name in [call.to_string(), cast.to_string()] {
                if let Some(other) = reserved.insert(name.clone(), what.clone()) {
                    return Err(GenError(format!(
                        "{what}: its method `{name}` would clash with {other}"
                    )));
                }
            }
            let fail = |e: GenError| GenError(format!("{what}: {e}"));
            let mut params = Vec::new();
            let mut inserts = Vec::new();
            for ((name, _), ty) in m.params.iter().zip(&m.param_types) {
                let id = ident(name);
                let ty = self.param_type(ty).map_err(fail)?;
                params.push(quote!(#id: #ty));
                let encode = match self.mode {
                    Mode::Client => quote!(#root::RpcError::InvalidArguments(e.to_string())),
                    Mode::Guest => quote!(#root::rpc::Error::Encode(e.to_string())),
                };
                inserts.push(quote! {
                    args.insert(
                        ::std::string::String::from(#name),
                        #root::__codegen::serde_json::to_value(&#id).map_err(|e| #encode)?,
                    );
                });
            }
            // A function's own `result<T, E>` is oslo's return-or-raise: `ok` is the value,
            // `err` a remote exception.
            let returned = match &m.result_type {
                None => quote!(()),
                Some(WitType::Result { ok, .. }) => {
                    self.payload_type(ok.as_deref()).map_err(fail)?
                }
                Some(t) => self.rust_type(t).map_err(fail)?,
            };
            let method = &m.name;
            let signature = format!("`{}`", m.signature());
            let mut call_doc = format!(
                "{}\n\nCalls {signature} and waits for its result.",
                m.docs.as_deref().unwrap_or("")
            );
            if matches!(m.result_type, Some(WitType::Result { .. })) {
                call_doc.push_str(
                    " An `err` the endpoint returns arrives as a remote exception: \
                     the error's `Remote` case, whose class names the error case \
                     (`not-found` is `NotFound`) or is the `remote-error` it carries.",
                );
            }
            let call_doc = doc(&call_doc);
            let cast_doc = doc(&format!(
                "Casts {signature}: sends it without waiting for a result (a fanout cast \
                 when the client was prepared with `fanout(true)`)."
            ));
            let args = quote! {
                let mut args = #root::__codegen::serde_json::Map::new();
                #(#inserts)*
            };
            methods.extend(match self.mode {
                Mode::Client => quote! {
                    #call_doc
                    pub async fn #call(&self, #(#params),*) -> ::core::result::Result<#returned, #root::RpcError> {
                        #args
                        self.client
                            .call::<#returned>(&self.context, #method, #root::__codegen::serde_json::Value::Object(args))
                            .await
                    }
                    #cast_doc
                    pub async fn #cast(&self, #(#params),*) -> ::core::result::Result<(), #root::RpcError> {
                        #args
                        self.client
                            .cast(&self.context, #method, #root::__codegen::serde_json::Value::Object(args))
                            .await
                    }
                },
                Mode::Guest => quote! {
                    #call_doc
                    pub fn #call(&self, #(#params),*) -> ::core::result::Result<#returned, #root::rpc::Error> {
                        #args
                        self.client.call::<#returned>(#method, &args)
                    }
                    #cast_doc
                    pub fn #cast(&self, #(#params),*) -> ::core::result::Result<(), #root::rpc::Error> {
                        #args
                        self.client.cast(#method, &args)
                    }
                },
            });
        }
        let iface_docs = docs(iface.docs.as_deref());
        Ok(match self.mode {
            Mode::Client => {
                self.client_struct(&client, &prepare, version, export, iface_docs, methods)
            }
            Mode::Guest => {
                self.guest_struct(&client, &prepare, version, export, iface_docs, methods)
            }
        })
    }

    fn client_struct(
        &self,
        client: &Ident,
        prepare: &Ident,
        version: &str,
        export: &str,
        iface_docs: TokenStream,
        methods: TokenStream,
    ) -> TokenStream {
        let root = self.mode.root();
        let about = doc(&format!(
            "\n\nA typed client of `{export}`, generated from its WIT: one async method per \
             function (and a `cast_` one), arguments and results checked at compile time. \
             Calls ask for version `{version}` unless the `RpcClient` (or `prepare()`) names \
             another.\n\n```ignore\nlet x = {client}::new(&rpc_client).prepare().server(\"host1\").build();\n```"
        ));
        let map = quote!(#root::__codegen::serde_json::Map<::std::string::String, #root::__codegen::serde_json::Value>);
        let target_setters = target_setters();
        quote! {
            #iface_docs
            #about
            #[derive(Debug, Clone)]
            pub struct #client {
                client: #root::RpcClient,
                context: #map,
            }

            impl #client {
                /// The oslo version this interface serves, which calls ask for by default.
                pub const VERSION: &'static str = #version;
                /// The WIT interface the client was generated from.
                pub const INTERFACE: &'static str = #export;

                /// A client over `client`'s transport and target, with an empty request context,
                /// asking for [`Self::VERSION`] unless the client's target names a version.
                ///
                /// ```ignore
                /// let typed = Typed::new(&fjord_client::RpcClient::new(transport, Target::new("topic")));
                /// ```
                pub fn new(client: &#root::RpcClient) -> Self {
                    let client = match client.target().version {
                        ::core::option::Option::Some(_) => client.clone(),
                        ::core::option::Option::None => client.prepare().version(Self::VERSION).build(),
                    };
                    Self { client, context: ::core::default::Default::default() }
                }

                /// oslo's `prepare()`: a builder of a client with server, version, namespace,
                /// timeout or context changed.
                ///
                /// ```ignore
                /// let on_host1 = typed.prepare().server("host1").timeout(Duration::from_secs(5)).build();
                /// ```
                pub fn prepare(&self) -> #prepare {
                    #prepare { prepare: self.client.prepare(), context: self.context.clone() }
                }

                /// The untyped client underneath.
                ///
                /// ```ignore
                /// let topic = &typed.rpc_client().target().topic;
                /// ```
                pub fn rpc_client(&self) -> &#root::RpcClient {
                    &self.client
                }

                #methods
            }

            #[doc = concat!("The builder [`", stringify!(#client), "::prepare`] returns; [`", stringify!(#prepare), "::build`] gives the client.")]
            ///
            /// ```ignore
            /// let c = typed.prepare().server("host1").version("1.1").build();
            /// ```
            #[derive(Debug, Clone)]
            pub struct #prepare {
                prepare: #root::Prepare,
                context: #map,
            }

            impl #prepare {
                #target_setters
                /// How long a call waits (and a cast may take to send).
                pub fn timeout(mut self, timeout: ::std::time::Duration) -> Self {
                    self.prepare = self.prepare.timeout(timeout);
                    self
                }
                /// oslo's `call_monitor_timeout`: the server must heartbeat this often.
                pub fn call_monitor_timeout(mut self, timeout: ::std::time::Duration) -> Self {
                    self.prepare = self.prepare.call_monitor_timeout(timeout);
                    self
                }
                /// The request context (`request_id`, `user_id`...) calls and casts send.
                pub fn context(mut self, context: #map) -> Self {
                    self.context = context;
                    self
                }
                /// The prepared client.
                pub fn build(self) -> #client {
                    #client { client: self.prepare.build(), context: self.context }
                }
            }
        }
    }

    fn guest_struct(
        &self,
        client: &Ident,
        prepare: &Ident,
        version: &str,
        export: &str,
        iface_docs: TokenStream,
        methods: TokenStream,
    ) -> TokenStream {
        let root = self.mode.root();
        let about = doc(&format!(
            "\n\nA typed client of `{export}` for an endpoint, generated from its WIT: one \
             method per function (and a `cast_` one) over the `rpc` import, arguments and \
             results checked at compile time. Calls ask for version `{version}` unless the \
             `Client` (or `prepare()`) names another.\n\n```ignore\nlet x = {client}::new(&fjord_guest::rpc::Client::new(Target::topic(\"compute\")));\n```"
        ));
        let target_setters = target_setters();
        quote! {
            #iface_docs
            #about
            #[derive(Debug, Clone)]
            pub struct #client {
                client: #root::rpc::Client,
            }

            impl #client {
                /// The oslo version this interface serves, which calls ask for by default.
                pub const VERSION: &'static str = #version;
                /// The WIT interface the client was generated from.
                pub const INTERFACE: &'static str = #export;

                /// A client of `client`'s target, asking for [`Self::VERSION`] unless the target
                /// names a version; the call being served passes its context on.
                ///
                /// ```ignore
                /// let typed = Typed::new(&Client::new(Target::topic("compute")));
                /// ```
                pub fn new(client: &#root::rpc::Client) -> Self {
                    let client = match client.target().version {
                        ::core::option::Option::Some(_) => client.clone(),
                        ::core::option::Option::None => client.prepare().version(Self::VERSION).build(),
                    };
                    Self { client }
                }

                /// oslo's `prepare()`: a builder of a client with server, version, namespace,
                /// fanout, timeout or context changed.
                ///
                /// ```ignore
                /// let node1 = typed.prepare().server("node1").build();
                /// ```
                pub fn prepare(&self) -> #prepare {
                    #prepare { prepare: self.client.prepare() }
                }

                /// The untyped client underneath.
                ///
                /// ```ignore
                /// let topic = &typed.rpc_client().target().topic;
                /// ```
                pub fn rpc_client(&self) -> &#root::rpc::Client {
                    &self.client
                }

                #methods
            }

            #[doc = concat!("The builder [`", stringify!(#client), "::prepare`] returns; [`", stringify!(#prepare), "::build`] gives the client.")]
            ///
            /// ```ignore
            /// let c = typed.prepare().server("node1").version("5.0").build();
            /// ```
            #[derive(Debug, Clone)]
            pub struct #prepare {
                prepare: #root::rpc::Prepare,
            }

            impl #prepare {
                #target_setters
                /// How long a call waits; the host caps it by the time left in the call served.
                pub fn timeout(mut self, timeout: ::std::time::Duration) -> Self {
                    self.prepare = self.prepare.timeout(timeout);
                    self
                }
                /// Sends `context` (a struct or map) instead of the served call's context.
                pub fn context(
                    mut self,
                    context: &impl #root::__codegen::serde::Serialize,
                ) -> ::core::result::Result<Self, #root::rpc::Error> {
                    self.prepare = self.prepare.context(context)?;
                    ::core::result::Result::Ok(self)
                }
                /// The prepared client.
                pub fn build(self) -> #client {
                    #client { client: self.prepare.build() }
                }
            }
        }
    }
}

/// `use x.{t}` brings `t` in as an alias of the same name: the type itself is generated.
/// The `prepare()` builder methods that change the target, the same for the client and the guest
/// (each wraps the `Prepare` of its side in a field `prepare`).
fn target_setters() -> TokenStream {
    quote! {
        /// One server of the topic.
        pub fn server(mut self, server: impl ::core::convert::Into<::std::string::String>) -> Self {
            self.prepare = self.prepare.server(server);
            self
        }
        /// The version the calls ask for.
        pub fn version(mut self, version: impl ::core::convert::Into<::std::string::String>) -> Self {
            self.prepare = self.prepare.version(version);
            self
        }
        /// The endpoint namespace.
        pub fn namespace(mut self, namespace: impl ::core::convert::Into<::std::string::String>) -> Self {
            self.prepare = self.prepare.namespace(namespace);
            self
        }
        /// The exchange.
        pub fn exchange(mut self, exchange: impl ::core::convert::Into<::std::string::String>) -> Self {
            self.prepare = self.prepare.exchange(exchange);
            self
        }
        /// Makes casts fanout casts.
        pub fn fanout(mut self, fanout: bool) -> Self {
            self.prepare = self.prepare.fanout(fanout);
            self
        }
    }
}

fn is_self_alias(t: &TypeDescription) -> bool {
    matches!(&t.kind, TypeKind::Alias(WitType::Named { name, owner }) if *name == t.name && *owner != t.owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(wit: &str, mode: Mode) -> String {
        let d = fjord_surface::describe_wit_text(wit).unwrap();
        let tokens = generate(&d, mode).unwrap();
        let file: syn::File = syn::parse2(tokens).unwrap();
        prettyplease::unparse(&file)
    }

    fn error(wit: &str) -> String {
        let d = fjord_surface::describe_wit_text(wit).unwrap();
        generate(&d, Mode::Client).unwrap_err().0
    }

    /// `needle` appears in `haystack` once whitespace and trailing commas are taken out
    /// (prettyplease's line breaks are not part of what is checked).
    #[track_caller]
    fn has(haystack: &str, needle: &str) {
        let squash = |s: &str| {
            let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            s.replace(",)", ")")
                .replace(",}", "}")
                .replace(",>", ">")
                .trim_end_matches(',')
                .to_string()
        };
        assert!(
            squash(haystack).contains(&squash(needle)),
            "missing:\n{needle}\nin:\n{haystack}"
        );
    }

    const CALCULATOR: &str = include_str!("../../wit/calculator/calculator.wit");

    #[test]
    fn calculator_client() {
        let code = generated(CALCULATOR, Mode::Client);
        has(&code, "pub mod calculator {");
        has(&code, "pub use calculator::Calculator;");
        has(&code, r#"pub const VERSION: &'static str = "1.0";"#);
        has(
            &code,
            r#"pub const INTERFACE: &'static str = "fjord:calculator/calculator@1.0.0";"#,
        );
        has(
            &code,
            "pub async fn add(&self, a: i64, b: i64) -> ::core::result::Result<i64, ::fjord_client::RpcError>",
        );
        has(
            &code,
            r#".call::<i64>(&self.context, "add", ::fjord_client::__codegen::serde_json::Value::Object(args))"#,
        );
        // A function's own result: the ok type is returned, the err is a remote exception.
        has(
            &code,
            "pub async fn divide( &self, dividend: i64, divisor: i64, rounding: ::core::option::Option<Rounding>, ) -> ::core::result::Result<i64, ::fjord_client::RpcError>",
        );
        has(&code, "pub async fn sum(&self, values: &[i64])");
        has(
            &code,
            "pub async fn centroid( &self, points: &[Point], ) -> ::core::result::Result<::core::option::Option<Point>, ::fjord_client::RpcError>",
        );
        has(&code, "pub async fn cast_add(&self, a: i64, b: i64) -> ::core::result::Result<(), ::fjord_client::RpcError>");
        has(&code, r#"#[serde(rename = "x")] pub x: f64,"#);
        has(
            &code,
            "pub enum Rounding { /// `down`\n #[serde(rename = \"down\")] Down,",
        );
        has(
            &code,
            r#"#[serde(rename = "division_by_zero")] DivisionByZero,"#,
        );
        has(
            &code,
            r#"#[serde(rename = "invalid_input")] InvalidInput(::std::string::String),"#,
        );
        has(
            &code,
            r#"#[serde(crate = "::fjord_client::__codegen::serde")]"#,
        );
        has(&code, "pub struct CalculatorPrepare {");
        // Nothing in the calculator holds a nested result.
        assert!(!code.contains("WitResult"), "{code}");
    }

    const SHAPES: &str = r#"
        package example:shapes@2.1.0;
        interface base { record remote-error { module: string, class: string, message: string } }
        interface shapes {
            use base.{remote-error};
            enum color { red, dark-green }
            flags perms { read, write-all }
            record point { x: f64, y-pos: f64 }
            record item { id: u64, tags: list<string>, color: option<color>, outcome: result<u8, string>, pair: tuple<s8, char>, fixed: list<u16, 4>, %type: string }
            variant shape { circle(f64), dot, poly(list<point>), named(tuple<string, option<color>>) }
            type ids = list<u64>;
            paint: func(shape: shape, color: color, perms: perms, name: option<string>, at: option<point>, ids: ids) -> result<_, remote-error>;
            get: func(id: u64) -> result<item, remote-error>;
            ping: func();
        }
        world w { export shapes; }
    "#;

    #[test]
    fn records_variants_flags_options_lists_results() {
        let code = generated(SHAPES, Mode::Client);
        // The used type is generated once, under its own name.
        has(&code, "pub struct RemoteError {");
        assert_eq!(code.matches("pub struct RemoteError").count(), 1, "{code}");
        assert!(!code.contains("pub type RemoteError"), "{code}");
        has(&code, r#"#[serde(rename = "y_pos")] pub y_pos: f64,"#);
        has(
            &code,
            r#"#[serde(rename = "type")] pub r#type: ::std::string::String,"#,
        );
        has(&code, "pub tags: ::std::vec::Vec<::std::string::String>,");
        has(&code, "pub color: ::core::option::Option<Color>,");
        has(&code, "pub outcome: WitResult<u8, ::std::string::String>,");
        has(&code, "pub pair: (i8, char),");
        has(&code, "pub fixed: [u16; 4usize],");
        has(&code, r#"#[serde(rename = "ok")] Ok(T),"#);
        has(&code, "Poly(::std::vec::Vec<Point>),");
        has(
            &code,
            "Named((::std::string::String, ::core::option::Option<Color>)),",
        );
        has(&code, "pub struct Perms { /// `read` is set.\n pub read: bool, /// `write_all` is set.\n pub write_all: bool, }");
        has(&code, r#"if self.write_all { names.push("write_all"); }"#);
        has(&code, "pub type Ids = ::std::vec::Vec<u64>;");
        // Parameters: enums and flags by value, strings and options of them borrowed.
        has(
            &code,
            "pub async fn paint( &self, shape: &Shape, color: Color, perms: Perms, name: ::core::option::Option<&str>, at: ::core::option::Option<&Point>, ids: &Ids, ) -> ::core::result::Result<(), ::fjord_client::RpcError>",
        );
        has(
            &code,
            "pub async fn get(&self, id: u64) -> ::core::result::Result<Item, ::fjord_client::RpcError>",
        );
        has(
            &code,
            "pub async fn ping(&self) -> ::core::result::Result<(), ::fjord_client::RpcError>",
        );
    }

    #[test]
    fn guest_stubs_are_synchronous_over_the_rpc_import() {
        let code = generated(SHAPES, Mode::Guest);
        has(
            &code,
            "pub fn get(&self, id: u64) -> ::core::result::Result<Item, ::fjord_guest::rpc::Error>",
        );
        has(&code, r#"self.client.call::<Item>("get", &args)"#);
        has(&code, r#"self.client.cast("get", &args)"#);
        has(&code, "::fjord_guest::rpc::Error::Encode(e.to_string())");
        has(
            &code,
            r#"#[serde(crate = "::fjord_guest::__codegen::serde")]"#,
        );
        has(
            &code,
            "pub fn new(client: &::fjord_guest::rpc::Client) -> Self",
        );
        assert!(!code.contains("async"), "{code}");
        assert!(!code.contains("fjord_client"), "{code}");
    }

    #[test]
    fn unsupported_functions_are_refused_by_name() {
        let e = error(
            r#"package a:b; interface api {
                resource counter { get: func() -> u32; }
                fine: func() -> u32;
                use-counter: func(c: borrow<counter>) -> u32;
            } world w { export api; }"#,
        );
        assert!(e.contains("function `use-counter` of `a:b/api`"), "{e}");
        assert!(e.contains("resource handle"), "{e}");
        let e = error(
            "package a:b; interface api { watch: func() -> stream<u8>; } world w { export api; }",
        );
        assert!(
            e.contains("function `watch`") && e.contains("a stream"),
            "{e}"
        );
    }

    #[test]
    fn clashing_names_are_refused() {
        let e = error("package a:b; interface api { new: func(); } world w { export api; }");
        assert!(e.contains("function `new`") && e.contains("clash"), "{e}");
        let e = error(
            "package a:b; interface api { add: func(); cast-add: func(); } world w { export api; }",
        );
        assert!(e.contains("`cast_add`"), "{e}");
        let e = error(
            "package a:b; interface api { record api { x: u8 } f: func(a: api); } world w { export api; }",
        );
        assert!(e.contains("would both be named `Api`"), "{e}");
    }

    #[test]
    fn maps_with_string_keys() {
        let wit = "package a:b; interface api { counts: func(by-name: map<string, u32>) -> map<string, list<u8>>; } world w { export api; }";
        let d = fjord_surface::describe_wit_text(wit).unwrap();
        let code =
            prettyplease::unparse(&syn::parse2(generate(&d, Mode::Client).unwrap()).unwrap());
        has(
            &code,
            "by_name: &::std::collections::BTreeMap<::std::string::String, u32>",
        );
        has(&code, "::core::result::Result<::std::collections::BTreeMap<::std::string::String, ::std::vec::Vec<u8>>, ::fjord_client::RpcError>");
        let e = error(
            "package a:b; interface api { f: func(m: map<u32, u32>); } world w { export api; }",
        );
        assert!(
            e.contains("function `f`") && e.contains("map whose keys are not strings"),
            "{e}"
        );
    }

    #[test]
    fn keywords_become_raw_identifiers() {
        assert_eq!(ident("type").to_string(), "r#type");
        assert_eq!(ident("self").to_string(), "self_");
        assert_eq!(ident("free-ram-mb").to_string(), "free_ram_mb");
        assert_eq!(camel_ident("self").to_string(), "Self_");
    }
}
