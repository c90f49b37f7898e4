//! Compiles the project's own Feast `.proto` files with pure-Rust tools (protox +
//! prost, with tonic's service generator for `feast.serving.ServingService`), so no
//! `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/feast/types/Value.proto",
        "proto/feast/core/Registry.proto",
        "proto/feast/serving/ServingService.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .btree_map(".")
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
