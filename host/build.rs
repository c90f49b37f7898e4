//! Compiles the project's own Feast `.proto` files with pure-Rust tools (protox + prost),
//! so no `protoc` is needed.

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
    prost_build::Config::new()
        .btree_map(["."])
        .compile_fds(fds)?;
    Ok(())
}
