//! Path infos and NAR calculation through a real server.

use futures::TryStreamExt;
use storefs_castore::{Directory, Node, PathComponent};
use storefs_grpc::ServerConfig;
use storefs_store::NarCalculationService;
use storefs_store::PathInfo;
use storefs_store::StorePath;
use storefs_store::nar::NarCalculator;
use storefs_testkit::GrpcServer;
use storefs_testkit::grpc::{Kind, client, memory_services};
use storefs_testkit::suites::blob::put_blob;

#[tokio::test]
async fn path_info_round_trip_and_nar_calculation() {
    let services = memory_services();
    let server = GrpcServer::start(Kind::Unix, services.clone(), ServerConfig::default()).await;
    let writer = client(&server.url);
    let reader = client(&server.url);

    let blob = put_blob(writer.blob.as_ref(), b"Hello World!").await;
    let mut root = Directory::new();
    root.add(
        PathComponent::try_from("hello.txt").unwrap(),
        Node::File {
            digest: blob,
            size: 12,
            executable: false,
        },
    )
    .unwrap();
    writer.directory.put(root.clone()).await.unwrap();
    let node = Node::Directory {
        digest: root.digest(),
        size: root.size(),
    };

    // The service's NAR calculation equals a local one over the same store.
    let (nar_size, nar_sha256) = reader.nar_calculation.calculate_nar(&node).await.unwrap();
    let local = NarCalculator::new(services.blob.clone(), services.directory.clone());
    assert_eq!(
        local.calculate_nar(&node).await.unwrap(),
        (nar_size, nar_sha256)
    );
    // A single file too (the empty entry name snix sends is accepted).
    let file = Node::File {
        digest: blob,
        size: 12,
        executable: true,
    };
    assert_eq!(
        reader.nar_calculation.calculate_nar(&file).await.unwrap(),
        local.calculate_nar(&file).await.unwrap()
    );

    let store_path = StorePath::from_parts([1u8; 20], "hello-1.0").unwrap();
    let dep = StorePath::from_parts([2u8; 20], "dep-2").unwrap();
    let info = PathInfo {
        store_path: store_path.clone(),
        node,
        references: vec![dep, store_path.clone()],
        nar_size,
        nar_sha256,
        signatures: vec![],
        deriver: Some(StorePath::from_parts([3u8; 20], "hello-1.0.drv").unwrap()),
        ca: None,
    };
    assert_eq!(writer.path_info.put(info.clone()).await.unwrap(), info);
    assert_eq!(
        reader.path_info.get(*store_path.digest()).await.unwrap(),
        Some(info.clone())
    );
    assert_eq!(reader.path_info.get([9u8; 20]).await.unwrap(), None);
    let all: Vec<PathInfo> = reader.path_info.list().try_collect().await.unwrap();
    assert_eq!(all, vec![info]);
    server.stop().await.unwrap();
}
