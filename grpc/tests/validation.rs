//! Malformed requests, sent with the raw generated clients: each gets a
//! status with a clear message, and the server keeps serving.

use bytes::Bytes;
use storefs_castore::proto;
use storefs_grpc::ServerConfig;
use storefs_grpc::proto::castore::blob_service_client::BlobServiceClient;
use storefs_grpc::proto::castore::directory_service_client::DirectoryServiceClient;
use storefs_grpc::proto::castore::{
    BlobChunk, GetDirectoryRequest, ReadBlobRequest, StatBlobRequest, get_directory_request,
};
use storefs_grpc::proto::store::path_info_service_client::PathInfoServiceClient;
use storefs_grpc::proto::store::{GetPathInfoRequest, get_path_info_request};
use storefs_testkit::GrpcServer;
use storefs_testkit::grpc::{Kind, memory_services};
use tonic::Code;

fn http_url(grpc_url: &str) -> String {
    grpc_url.replace("grpc://", "http://")
}

#[tokio::test]
async fn bad_requests_get_clear_statuses() {
    let server = GrpcServer::start(Kind::Tcp, memory_services(), ServerConfig::default()).await;
    let url = http_url(&server.url);
    let mut blobs = BlobServiceClient::connect(url.clone()).await.unwrap();
    let mut dirs = DirectoryServiceClient::connect(url.clone()).await.unwrap();
    let mut infos = PathInfoServiceClient::connect(url).await.unwrap();

    let s = blobs
        .stat(StatBlobRequest {
            digest: Bytes::from_static(&[0; 31]),
            send_chunks: true,
            send_bao: false,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("digest") && s.message().contains("31"),
        "{}",
        s.message()
    );

    let s = blobs
        .read(ReadBlobRequest {
            digest: Bytes::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);

    let s = blobs
        .read(ReadBlobRequest {
            digest: Bytes::from_static(&[7; 32]),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);

    let s = dirs
        .get(GetDirectoryRequest {
            by_what: None,
            recursive: true,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("by_what"), "{}", s.message());

    let s = dirs
        .get(GetDirectoryRequest {
            by_what: Some(get_directory_request::ByWhat::Digest(Bytes::from_static(
                &[1; 32],
            ))),
            recursive: true,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);

    // Unsorted entries.
    let file = |name: &'static str| proto::FileEntry {
        name: Bytes::from_static(name.as_bytes()),
        digest: Bytes::from_static(&[0; 32]),
        size: 1,
        executable: false,
    };
    let bad = proto::Directory {
        directories: vec![],
        files: vec![file("b"), file("a")],
        symlinks: vec![],
    };
    let s = dirs.put(futures::stream::iter([bad])).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("directory #0") && s.message().contains("sorted"),
        "{}",
        s.message()
    );

    let s = dirs
        .put(futures::stream::iter(Vec::<proto::Directory>::new()))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);

    let s = infos
        .get(GetPathInfoRequest {
            by_what: Some(get_path_info_request::ByWhat::ByOutputHash(
                Bytes::from_static(&[0; 19]),
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("19"), "{}", s.message());

    let s = infos
        .put(storefs_store::proto::PathInfo::default())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);

    let s = infos
        .calculate_nar(proto::Entry { entry: None })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);

    // An over-sized message is refused, not decoded.
    let huge = BlobChunk {
        data: Bytes::from(vec![
            0u8;
            storefs_grpc::limits::MAX_DECODING_MESSAGE_SIZE + 1
        ]),
    };
    let s = blobs.put(futures::stream::iter([huge])).await.unwrap_err();
    assert_eq!(s.code(), Code::OutOfRange, "{s:?}");

    // Still serving after all that.
    let ok = blobs
        .put(futures::stream::iter([BlobChunk {
            data: Bytes::from_static(b"fine"),
        }]))
        .await;
    assert_eq!(
        ok.unwrap().into_inner().digest.as_ref(),
        storefs_castore::B3Digest::of(b"fine").as_bytes()
    );
    server.stop().await.unwrap();
}
