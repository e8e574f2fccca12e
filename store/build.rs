//! Generates the path-info protobuf messages from `proto/`; castore's
//! messages are taken from storefs-castore rather than generated twice.

fn main() -> std::io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(std::io::Error::other)?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.bytes(["."]);
    config.extern_path(".snix.castore.v1", "::storefs_castore::proto");
    config.compile_protos(&["snix/store/v1/pathinfo.proto"], &["../proto"])?;
    println!("cargo:rerun-if-changed=../proto/snix/store/v1/pathinfo.proto");
    Ok(())
}
