//! Generates the tonic services from `proto/`. Messages come from the crates
//! that own them (castore, store) through `extern_path`, so each message type
//! exists once.

fn main() -> std::io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(std::io::Error::other)?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .bytes(".")
        .extern_path(
            ".snix.castore.v1.Directory",
            "::storefs_castore::proto::Directory",
        )
        .extern_path(
            ".snix.castore.v1.DirectoryEntry",
            "::storefs_castore::proto::DirectoryEntry",
        )
        .extern_path(
            ".snix.castore.v1.FileEntry",
            "::storefs_castore::proto::FileEntry",
        )
        .extern_path(
            ".snix.castore.v1.SymlinkEntry",
            "::storefs_castore::proto::SymlinkEntry",
        )
        .extern_path(".snix.castore.v1.Entry", "::storefs_castore::proto::Entry")
        .extern_path(
            ".snix.store.v1.PathInfo",
            "::storefs_store::proto::PathInfo",
        )
        .extern_path(".snix.store.v1.NARInfo", "::storefs_store::proto::NarInfo")
        .extern_path(
            ".snix.store.v1.StorePath",
            "::storefs_store::proto::StorePath",
        )
        .compile_with_config(
            config,
            &[
                "snix/castore/v1/rpc_blobstore.proto",
                "snix/castore/v1/rpc_directory.proto",
                "snix/store/v1/rpc_pathinfo.proto",
                "storefs/castore/v1/rpc_chunks.proto",
            ],
            &["../proto"],
        )?;
    println!("cargo:rerun-if-changed=../proto");
    Ok(())
}
