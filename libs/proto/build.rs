//! Generates the Rust types and the tonic service for `proto/aloft/v1` with a vendored `protoc`, so a fresh
//! machine needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let root = "../../proto";
    let files = [
        "aloft/v1/envelope.proto",
        "aloft/v1/types.proto",
        "aloft/v1/admin.proto",
        "aloft/v1/catalog.proto",
    ];
    let paths: Vec<String> = files.iter().map(|f| format!("{root}/{f}")).collect();
    for path in &paths {
        println!("cargo:rerun-if-changed={path}");
    }
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&paths, &[root.to_string()])?;
    Ok(())
}
