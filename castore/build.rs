//! Generates the castore protobuf messages from `proto/`, with a vendored
//! `protoc` so that a fresh machine needs nothing but cargo.

fn main() -> std::io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(std::io::Error::other)?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.bytes(["."]);
    config.compile_protos(&["snix/castore/v1/castore.proto"], &["../proto"])?;
    println!("cargo:rerun-if-changed=../proto/snix/castore/v1/castore.proto");
    Ok(())
}
