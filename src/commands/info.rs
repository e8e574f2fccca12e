//! `storefs info`: what the store knows of paths.

use storefs_castore::Node;
use storefs_store::PathInfo;
use storefs_store::StoreDir;
use storefs_store::nixbase32;

use crate::commands::lookup;
use crate::services::Services;

/// Print the path info of each path, as text or JSON.
pub async fn run(
    services: &Services,
    store_dir: &StoreDir,
    json: bool,
    paths: &[String],
) -> anyhow::Result<()> {
    let mut infos = Vec::with_capacity(paths.len());
    for p in paths {
        infos.push(lookup(services, store_dir, p).await?);
    }
    if json {
        let v: Vec<serde_json::Value> = infos.iter().map(|i| to_json(i, store_dir)).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (n, info) in infos.iter().enumerate() {
            if n > 0 {
                println!();
            }
            print_text(info, store_dir);
        }
    }
    Ok(())
}

fn nar_hash(info: &PathInfo) -> String {
    format!("sha256:{}", nixbase32::encode(&info.nar_sha256))
}

fn root(node: &Node) -> (String, &'static str) {
    match node {
        Node::Directory { digest, .. } => (digest.to_hex(), "directory"),
        Node::File { digest, .. } => (digest.to_hex(), "file"),
        Node::Symlink { target } => (target.to_string(), "symlink"),
    }
}

fn print_text(info: &PathInfo, store_dir: &StoreDir) {
    println!("StorePath: {}", info.store_path.to_absolute(store_dir));
    println!("NarHash: {}", nar_hash(info));
    println!("NarSize: {}", info.nar_size);
    let refs: Vec<String> = info.references.iter().map(|r| r.to_string()).collect();
    println!("References: {}", refs.join(" "));
    if let Some(d) = &info.deriver {
        println!("Deriver: {d}");
    }
    for s in &info.signatures {
        println!("Sig: {}", s);
    }
    if let Some(ca) = &info.ca {
        println!("CA: {ca}");
    }
    let (digest, kind) = root(&info.node);
    println!("Root: {kind} {digest}");
}

fn to_json(info: &PathInfo, store_dir: &StoreDir) -> serde_json::Value {
    let (digest, kind) = root(&info.node);
    serde_json::json!({
        "path": info.store_path.to_absolute(store_dir),
        "narHash": nar_hash(info),
        "narSize": info.nar_size,
        "references": info.references.iter().map(|r| r.to_absolute(store_dir)).collect::<Vec<_>>(),
        "deriver": info.deriver.as_ref().map(|d| d.to_absolute(store_dir)),
        "signatures": info.signatures.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "ca": info.ca.as_ref().map(|c| c.to_string()),
        "root": { "type": kind, "digest": digest },
    })
}
