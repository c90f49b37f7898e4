//! `#[odfv]`: a Rust function of one row as a Feast on-demand feature view (used
//! through `feast_plugin_sdk::odfv`, whose documentation has the details).
//!
//! ```ignore
//! #[feast_plugin_sdk::odfv(name = "transformed_conv_rate", outputs = "conv_rate_plus_val1")]
//! fn plus_val1(conv_rate: f32, val_to_add: i64) -> f64 {
//!     f64::from(conv_rate) + val_to_add as f64
//! }
//! // generates `fn plus_val1_odfv() -> feast_plugin_sdk::Odfv`
//! ```

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, LitStr, Pat, PathArguments, ReturnType, Type};

/// The value type of `Option<T>` (T), or None for any other type.
fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) if args.args.len() == 1 => Some(t),
        _ => None,
    }
}

/// (value type, nullable) of an argument or result type.
fn column_of(ty: &Type) -> (&Type, bool) {
    option_inner(ty).map_or((ty, false), |t| (t, true))
}

struct Args {
    name: Option<String>,
    outputs: Vec<String>,
}

fn parse_args(attr: TokenStream) -> syn::Result<Args> {
    let mut args = Args {
        name: None,
        outputs: Vec::new(),
    };
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            args.name = Some(meta.value()?.parse::<LitStr>()?.value());
            Ok(())
        } else if meta.path.is_ident("outputs") || meta.path.is_ident("output") {
            let list = meta.value()?.parse::<LitStr>()?.value();
            args.outputs = list
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            Ok(())
        } else {
            Err(meta.error("expected `name = \"...\"` or `outputs = \"a, b\"`"))
        }
    });
    syn::parse::Parser::parse(parser, attr)?;
    Ok(args)
}

/// A function of one row as an on-demand feature view: see `feast_plugin_sdk::odfv`.
#[proc_macro_attribute]
pub fn odfv(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr, item) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<proc_macro2::TokenStream> {
    let args = parse_args(attr)?;
    let func: ItemFn = syn::parse(item)?;
    let fn_name = &func.sig.ident;
    let odfv_name = args.name.unwrap_or_else(|| fn_name.to_string());
    let builder = format_ident!("{}_odfv", fn_name);
    let vis = &func.vis;

    // Inputs: one column per argument, named as the argument.
    let mut inputs = Vec::new();
    for arg in &func.sig.inputs {
        let FnArg::Typed(t) = arg else {
            return Err(syn::Error::new(
                arg.span(),
                "an ODFV function takes no `self`",
            ));
        };
        let Pat::Ident(ident) = &*t.pat else {
            return Err(syn::Error::new(
                t.pat.span(),
                "each argument must be a plain name: the input column it reads",
            ));
        };
        let (ty, nullable) = column_of(&t.ty);
        inputs.push((ident.ident.clone(), ty.clone(), nullable));
    }

    // Outputs: the result, or each element of a tuple result.
    let results: Vec<Type> = match &func.sig.output {
        ReturnType::Default => {
            return Err(syn::Error::new(
                func.sig.span(),
                "an ODFV function returns its output value(s)",
            ));
        }
        ReturnType::Type(_, ty) => match &**ty {
            Type::Tuple(t) => t.elems.iter().cloned().collect(),
            other => vec![other.clone()],
        },
    };
    let tuple =
        matches!(&func.sig.output, ReturnType::Type(_, ty) if matches!(**ty, Type::Tuple(_)));
    let outputs = if args.outputs.is_empty() && results.len() == 1 {
        vec![odfv_name.clone()]
    } else {
        args.outputs
    };
    if outputs.len() != results.len() {
        return Err(syn::Error::new(
            func.sig.output.span(),
            format!(
                "{} output name(s) in `outputs = \"...\"` for {} result value(s)",
                outputs.len(),
                results.len()
            ),
        ));
    }

    let sdk = quote!(::feast_plugin_sdk);
    let read = inputs.iter().enumerate().map(|(i, (name, ty, _))| {
        let var = format_ident!("__in{}", i);
        let col = name.to_string();
        quote! {
            let mut #var = <#ty as #sdk::row::RowValue>::read(input, #col)?.into_iter();
        }
    });
    let take = inputs.iter().enumerate().map(|(i, (name, _, nullable))| {
        let var = format_ident!("__in{}", i);
        if *nullable {
            quote! { let #name = #var.next().unwrap_or(None); }
        } else {
            // A null input makes every output of the row null, as in Feast's
            // functions that guard with `if x is None`.
            quote! {
                let #name = match #var.next() {
                    Some(Some(v)) => v,
                    _ => {
                        __null_row = true;
                        Default::default()
                    }
                };
            }
        }
    });
    let out_vars: Vec<_> = (0..results.len())
        .map(|i| format_ident!("__out{}", i))
        .collect();
    let out_types: Vec<(Type, bool)> = results
        .iter()
        .map(|t| {
            let (ty, nullable) = column_of(t);
            (ty.clone(), nullable)
        })
        .collect();
    let out_decl = out_vars.iter().zip(&out_types).map(|(v, (ty, _))| {
        quote! { let mut #v: Vec<Option<#ty>> = Vec::with_capacity(rows); }
    });
    let result_vars: Vec<_> = (0..results.len())
        .map(|i| format_ident!("__r{}", i))
        .collect();
    let bind = if tuple {
        quote! { let (#(#result_vars,)*) }
    } else {
        let r = &result_vars[0];
        quote! { let #r }
    };
    let arg_names = inputs.iter().map(|(name, _, _)| name);
    let push = out_vars
        .iter()
        .zip(&result_vars)
        .zip(&out_types)
        .map(|((v, r), (_, nullable))| {
            if *nullable {
                quote! { #v.push(#r); }
            } else {
                quote! { #v.push(Some(#r)); }
            }
        });
    let push_null = out_vars.iter().map(|v| quote! { #v.push(None); });
    // Only a function with a non-nullable argument can have a row it is not called on.
    let (start_row, skip_null_row) = if inputs.iter().any(|(_, _, nullable)| !nullable) {
        (
            quote! { let mut __null_row = false; },
            quote! {
                if __null_row {
                    #(#push_null)*
                    continue;
                }
            },
        )
    } else {
        (quote! {}, quote! {})
    };
    let columns = outputs
        .iter()
        .zip(&out_vars)
        .zip(&out_types)
        .map(|((name, v), (ty, _))| {
            quote! { (#name, <#ty as #sdk::row::RowValue>::column(#v)) }
        });
    let declare_inputs = inputs.iter().map(|(name, ty, _)| {
        let col = name.to_string();
        quote! { .input(#col, <#ty as #sdk::row::RowValue>::COLUMN_TYPE) }
    });
    let declare_outputs = outputs.iter().zip(&out_types).map(|(name, (ty, _))| {
        quote! { .output(#name, <#ty as #sdk::row::RowValue>::COLUMN_TYPE) }
    });
    let doc =
        format!("The on-demand feature view `{odfv_name}`, computed row by row by [`{fn_name}`].");
    let span = Span::call_site();
    let batch_fn = syn::Ident::new("__feast_odfv_batch", span);
    Ok(quote! {
        #func

        #[doc = #doc]
        #vis fn #builder() -> #sdk::Odfv {
            fn #batch_fn(
                input: &#sdk::arrow_array::RecordBatch,
            ) -> ::std::result::Result<#sdk::arrow_array::RecordBatch, #sdk::PluginError> {
                let rows = input.num_rows();
                #(#read)*
                #(#out_decl)*
                for _ in 0..rows {
                    #start_row
                    #(#take)*
                    #skip_null_row
                    #bind = #fn_name(#(#arg_names),*);
                    #(#push)*
                }
                #sdk::batch([#(#columns),*])
            }
            #sdk::Odfv::new(#odfv_name, #batch_fn)
                #(#declare_inputs)*
                #(#declare_outputs)*
        }
    })
}
