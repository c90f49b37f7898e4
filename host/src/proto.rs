//! Rust types generated (by `build.rs`, with protox + prost) from the project's own
//! `.proto` files, which carry Feast's package names and field numbers.

#![allow(missing_docs, reason = "generated code")]
#![allow(unreachable_pub, reason = "generated code")]
#![allow(clippy::all, reason = "generated code")]
#![allow(clippy::allow_attributes_without_reason, reason = "generated code")]
#![allow(clippy::allow_attributes, reason = "generated code")]

/// Feast protos.
pub mod feast {
    /// `feast.types`: values and entity keys.
    pub mod types {
        include!(concat!(env!("OUT_DIR"), "/feast.types.rs"));
    }
    /// `feast.core`: registry objects.
    pub mod core {
        include!(concat!(env!("OUT_DIR"), "/feast.core.rs"));
    }
    /// `feast.serving`: the online serving API.
    pub mod serving {
        include!(concat!(env!("OUT_DIR"), "/feast.serving.rs"));
    }
}
