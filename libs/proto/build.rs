//! Generates the Rust types and the tonic service for `proto/aloft/v1` with a vendored `protoc`, so a fresh
//! machine needs no system protobuf compiler; their serde impls (pbjson, for the REST API); and the
//! descriptor set the REST API's OpenAPI document is generated from.

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
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("aloft_descriptor.bin");
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(&descriptor_path)
        .compile_protos(&paths, &[root.to_string()])?;
    // Serde for every message, in the proto3 JSON mapping with the proto's own field names: the REST API
    // speaks the gRPC API's messages as JSON.
    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".aloft.v1"])?;
    Ok(())
}
