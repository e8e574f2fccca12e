//! The path info service suite, and the path infos it uses.

use futures::TryStreamExt;
use storefs_castore::{B3Digest, Node};
use storefs_store::PathInfoService;
use storefs_store::{ContentAddress, NixHash, PathInfo, Signature};
use storefs_store::{StoreDir, StorePath, make_text_path};

/// A text path named `name` with these references, its contents `name`.
pub fn info(name: &str, refs: &[&PathInfo], self_ref: bool) -> PathInfo {
    let sd = StoreDir::default();
    let h: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(name.as_bytes()).into()
    };
    let refs: Vec<StorePath> = refs.iter().map(|i| i.store_path.clone()).collect();
    let mut store_path = make_text_path(name, &h, &refs, &sd).unwrap();
    if self_ref {
        // Not a real text path, but services do not recompute paths.
        store_path = StorePath::from_parts([name.len() as u8; 20], name).unwrap();
    }
    let mut references = refs;
    if self_ref {
        references.push(store_path.clone());
    }
    PathInfo {
        store_path,
        node: Node::File {
            digest: B3Digest::of(name.as_bytes()),
            size: name.len() as u64,
            executable: false,
        },
        references,
        nar_size: 100 + name.len() as u64,
        nar_sha256: h,
        signatures: vec![Signature {
            name: "k-1".into(),
            bytes: [7; 64],
        }],
        deriver: None,
        ca: Some(ContentAddress::Recursive(NixHash::sha256(h))),
    }
}

/// The names of `paths`, in order.
pub fn names(paths: &[StorePath]) -> Vec<String> {
    paths.iter().map(|p| p.name().to_owned()).collect()
}

/// The suite: put, get, list and referrers (with a self-reference and a
/// replaced record) on an empty service.
pub async fn conformance(svc: &dyn PathInfoService) {
    let a = info("a", &[], false);
    let b = info("b", &[&a], false);
    let c = info("c", &[&a, &b], false);
    let s = info("selfref", &[&a], true);

    assert_eq!(svc.get(*a.store_path.digest()).await.unwrap(), None);
    assert_eq!(svc.list().try_collect::<Vec<_>>().await.unwrap(), vec![]);
    assert_eq!(svc.referrers(*a.store_path.digest()).await.unwrap(), vec![]);

    for i in [&a, &b, &c, &s] {
        assert_eq!(&svc.put(i.clone()).await.unwrap(), i);
    }
    for i in [&a, &b, &c, &s] {
        assert_eq!(
            svc.get(*i.store_path.digest()).await.unwrap().as_ref(),
            Some(i)
        );
    }
    let mut all: Vec<PathInfo> = svc.list().try_collect().await.unwrap();
    all.sort_by_key(|i| i.store_path.name().to_owned());
    assert_eq!(all, vec![a.clone(), b.clone(), c.clone(), s.clone()]);

    let mut expect = vec![
        b.store_path.clone(),
        c.store_path.clone(),
        s.store_path.clone(),
    ];
    expect.sort_by_key(|p| p.base_name());
    assert_eq!(svc.referrers(*a.store_path.digest()).await.unwrap(), expect);
    assert_eq!(
        names(&svc.referrers(*b.store_path.digest()).await.unwrap()),
        ["c"]
    );
    assert_eq!(svc.referrers(*c.store_path.digest()).await.unwrap(), vec![]);
    assert_eq!(
        names(&svc.referrers(*s.store_path.digest()).await.unwrap()),
        ["selfref"]
    );

    // Replacing c with a version that refers only to b drops c from a's
    // referrers, in the same step.
    let mut c2 = c.clone();
    c2.references = vec![b.store_path.clone()];
    c2.signatures.clear();
    svc.put(c2.clone()).await.unwrap();
    assert_eq!(
        svc.get(*c.store_path.digest()).await.unwrap(),
        Some(c2.clone())
    );
    let mut expect = vec![b.store_path.clone(), s.store_path.clone()];
    expect.sort_by_key(|p| p.base_name());
    assert_eq!(svc.referrers(*a.store_path.digest()).await.unwrap(), expect);
    assert_eq!(
        names(&svc.referrers(*b.store_path.digest()).await.unwrap()),
        ["c"]
    );
    assert_eq!(svc.list().try_collect::<Vec<_>>().await.unwrap().len(), 4);
}
