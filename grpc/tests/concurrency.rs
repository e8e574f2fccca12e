//! Many concurrent streams over one connection, reading the same and
//! different blobs, whole and by chunk.

use std::sync::Arc;

use storefs_grpc::ServerConfig;
use storefs_testkit::grpc::{Kind, client, memory_services};
use storefs_testkit::suites::blob::{put_blob, try_read_blob};
use storefs_testkit::{GrpcServer, pseudo_random};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_streams_get_the_right_bytes() {
    let services = memory_services();
    let mut blobs = Vec::new();
    for i in 0..8u64 {
        let data = pseudo_random((1 << 20) + (i as usize) * 77_777, 100 + i);
        let digest = put_blob(services.blob.as_ref(), &data).await;
        blobs.push((digest, Arc::new(data)));
    }
    let blobs = Arc::new(blobs);
    for kind in [Kind::Tcp, Kind::Unix] {
        let server = GrpcServer::start(kind, services.clone(), ServerConfig::default()).await;
        let c = client(&server.url);
        let mut tasks = Vec::new();
        for t in 0..64usize {
            let c = c.clone();
            let blobs = blobs.clone();
            tasks.push(tokio::spawn(async move {
                // Even tasks all read blob 0; odd ones spread over the rest.
                let (digest, data) = &blobs[if t % 2 == 0 { 0 } else { 1 + t % 7 }];
                if t % 4 < 2 {
                    let got = try_read_blob(c.blob.as_ref(), digest).await.unwrap();
                    assert!(got == **data, "task {t}: wrong bytes");
                } else {
                    let chunks = c.blob.chunks(digest).await.unwrap().unwrap();
                    let mut off = 0usize;
                    for ch in chunks {
                        let bytes = c.blob.read_chunk(&ch.digest).await.unwrap().unwrap();
                        assert!(
                            bytes == data[off..off + bytes.len()],
                            "task {t}: wrong chunk"
                        );
                        off += bytes.len();
                    }
                    assert_eq!(off, data.len());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        server.stop().await.unwrap();
    }
}
