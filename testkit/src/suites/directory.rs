//! The directory service suite, and helpers to build directories.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use storefs_castore::{
    B3Digest, Directory, DirectoryService, Error, Node, PathComponent, SymlinkTarget,
};

/// A path component from bytes.
pub fn name(s: &[u8]) -> PathComponent {
    PathComponent::new(Bytes::copy_from_slice(s)).unwrap()
}

/// A directory of files named `names`, each file's digest that of its name.
pub fn file_dir(names: &[&str]) -> Directory {
    let mut d = Directory::new();
    for n in names {
        d.add(
            name(n.as_bytes()),
            Node::File {
                digest: B3Digest::of(n.as_bytes()),
                size: n.len() as u64,
                executable: false,
            },
        )
        .unwrap();
    }
    d
}

/// `base` with the directories `children` added under their names.
pub fn with_children(base: Directory, children: &[(&str, &Directory)]) -> Directory {
    let mut d = base;
    for (n, c) in children {
        d.add(
            name(n.as_bytes()),
            Node::Directory {
                digest: c.digest(),
                size: c.size(),
            },
        )
        .unwrap();
    }
    d
}

/// A diamond: root → {a, b}, a → c, b → c, b → d.
pub struct Diamond {
    /// A leaf with one file.
    pub c: Directory,
    /// A leaf with one symlink.
    pub d: Directory,
    /// Names `c`.
    pub a: Directory,
    /// Names `c` and `d`.
    pub b: Directory,
    /// Names `a` and `b`.
    pub root: Directory,
}

/// The [`Diamond`] test closure.
pub fn diamond() -> Diamond {
    let c = file_dir(&["c-file"]);
    let d = {
        let mut d = Directory::new();
        d.add(
            name(b"link"),
            Node::Symlink {
                target: SymlinkTarget::try_from("../c").unwrap(),
            },
        )
        .unwrap();
        d
    };
    let a = with_children(file_dir(&["a-file"]), &[("c", &c)]);
    let b = with_children(Directory::new(), &[("c2", &c), ("d", &d)]);
    let root = with_children(file_dir(&["readme"]), &[("a", &a), ("b", &b)]);
    Diamond { c, d, a, b, root }
}

/// The whole recursive get of `root`, in the order the service yields it.
pub async fn collect(svc: &dyn DirectoryService, root: &B3Digest) -> Result<Vec<Directory>, Error> {
    let mut s = svc.get_recursive(root);
    let mut out = Vec::new();
    while let Some(d) = s.next().await {
        out.push(d?);
    }
    Ok(out)
}

/// A directory put is got back; putting it again is harmless; a parent whose child is stored can be put alone.
pub async fn dir_put_get(svc: Arc<dyn DirectoryService>) {
    let leaf = file_dir(&["x", "y"]);
    let digest = svc.put(leaf.clone()).await.unwrap();
    assert_eq!(digest, leaf.digest());
    assert_eq!(svc.get(&digest).await.unwrap(), Some(leaf.clone()));
    // Putting it again is harmless.
    assert_eq!(svc.put(leaf.clone()).await.unwrap(), digest);
    let empty = Directory::new();
    assert_eq!(
        svc.put(empty.clone()).await.unwrap().to_hex(),
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    );
    // A parent whose child is stored can be put alone.
    let parent = with_children(Directory::new(), &[("leaf", &leaf)]);
    assert_eq!(svc.put(parent.clone()).await.unwrap(), parent.digest());
    assert_eq!(svc.get(&parent.digest()).await.unwrap(), Some(parent));
}

/// A directory never put is absent, and its recursive get is empty.
pub async fn dir_missing(svc: Arc<dyn DirectoryService>) {
    let d = B3Digest::of(b"no such directory");
    assert_eq!(svc.get(&d).await.unwrap(), None);
    assert!(collect(&*svc, &d).await.unwrap().is_empty());
}

/// A directory naming a child that is not stored is refused.
pub async fn dir_put_without_child(svc: Arc<dyn DirectoryService>) {
    let child = file_dir(&["orphan"]);
    let parent = with_children(Directory::new(), &[("c", &child)]);
    let err = svc.put(parent.clone()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    assert_eq!(svc.get(&parent.digest()).await.unwrap(), None);
}

/// A closure put leaves first becomes visible only at close, and comes back root first, each directory once.
pub async fn dir_closure_and_recursive_order(svc: Arc<dyn DirectoryService>) {
    let t = diamond();
    let mut p = svc.put_multiple_start();
    for d in [&t.c, &t.d, &t.a, &t.b] {
        p.put(d.clone()).await.unwrap();
    }
    // Nothing is visible before close.
    assert_eq!(svc.get(&t.c.digest()).await.unwrap(), None);
    p.put(t.root.clone()).await.unwrap();
    assert_eq!(svc.get(&t.root.digest()).await.unwrap(), None);
    let root = p.close().await.unwrap();
    assert_eq!(root, t.root.digest());
    assert_eq!(p.close().await.unwrap(), root, "close twice");
    for d in [&t.c, &t.d, &t.a, &t.b, &t.root] {
        assert_eq!(svc.get(&d.digest()).await.unwrap().as_ref(), Some(d));
    }
    // Breadth first, root first, each once: root, a, b, then c (via a), d.
    let got = collect(&*svc, &root).await.unwrap();
    assert_eq!(got, vec![t.root.clone(), t.a, t.b, t.c, t.d]);
    // A sub-closure.
    let got = collect(&*svc, &diamond().b.digest()).await.unwrap();
    assert_eq!(got, vec![diamond().b, diamond().c, diamond().d]);
}

/// A closure put out of order fails at the first directory naming a child
/// that is neither stored nor put before it, stays failed and stores nothing.
pub async fn dir_closure_wrong_order(svc: Arc<dyn DirectoryService>) {
    wrong_order(svc, false).await;
}

/// [`dir_closure_wrong_order`] for a putter that streams to a service (the
/// gRPC client): the refusal may arrive at a later put, and at the latest at
/// close; nothing is stored either way.
pub async fn dir_closure_wrong_order_streamed(svc: Arc<dyn DirectoryService>) {
    wrong_order(svc, true).await;
}

async fn wrong_order(svc: Arc<dyn DirectoryService>, streamed: bool) {
    let t = diamond();
    let mut p = svc.put_multiple_start();
    p.put(t.c.clone()).await.unwrap();
    // `a` names `c` (put) — fine; `b` names `d`, not yet put.
    p.put(t.a.clone()).await.unwrap();
    let at_b = p.put(t.b.clone()).await;
    if streamed {
        let _ = (at_b, p.put(t.d.clone()).await);
        let err = p.close().await.unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    } else {
        let err = at_b.unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
        // The putter stays failed, and nothing was stored.
        assert!(p.put(t.d.clone()).await.is_err());
        assert!(p.close().await.is_err());
    }
    assert_eq!(svc.get(&t.c.digest()).await.unwrap(), None);
    assert_eq!(svc.get(&t.a.digest()).await.unwrap(), None);
}

/// A closure that is not connected (or empty) is refused and stores nothing.
pub async fn dir_closure_disconnected(svc: Arc<dyn DirectoryService>) {
    let x = file_dir(&["x"]);
    let y = file_dir(&["y"]);
    let mut p = svc.put_multiple_start();
    p.put(x.clone()).await.unwrap();
    p.put(y.clone()).await.unwrap();
    let err = p.close().await.unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    assert!(err.to_string().contains("disconnected"), "{err}");
    assert_eq!(svc.get(&x.digest()).await.unwrap(), None);
    assert_eq!(svc.get(&y.digest()).await.unwrap(), None);
    // An empty closure is refused too.
    assert!(svc.put_multiple_start().close().await.is_err());
}

/// A later closure may name directories stored before without sending them.
pub async fn dir_closure_on_stored_child(svc: Arc<dyn DirectoryService>) {
    let t = diamond();
    let mut p = svc.put_multiple_start();
    p.put(t.c.clone()).await.unwrap();
    p.put(t.a.clone()).await.unwrap();
    p.close().await.unwrap();
    // A later closure may name `a` and `c` without sending them.
    let mut p = svc.put_multiple_start();
    p.put(t.d.clone()).await.unwrap();
    p.put(t.b.clone()).await.unwrap();
    p.put(t.root.clone()).await.unwrap();
    assert_eq!(p.close().await.unwrap(), t.root.digest());
    assert_eq!(collect(&*svc, &t.root.digest()).await.unwrap().len(), 5);
}

/// Putters running at once each store their closure.
pub async fn dir_concurrent_putters(svc: Arc<dyn DirectoryService>) {
    let mut tasks = Vec::new();
    for i in 0..4 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let leaf = file_dir(&[&format!("leaf{i}")]);
            let root = with_children(Directory::new(), &[("sub", &leaf)]);
            let mut p = svc.put_multiple_start();
            p.put(leaf).await.unwrap();
            p.put(root.clone()).await.unwrap();
            (p.close().await.unwrap(), root)
        }));
    }
    for t in tasks {
        let (digest, root) = t.await.unwrap();
        assert_eq!(collect(&*svc, &digest).await.unwrap()[0], root);
    }
}
