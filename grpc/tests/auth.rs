//! Tokens: with a write token configured, writes need it and reads stay
//! open; with a read token, reads need it too.

use std::io::ErrorKind;

use storefs_castore::{B3Digest, Directory, Error};
use storefs_grpc::{AuthPolicy, ClientConfig, ServerConfig, Token};
use storefs_testkit::GrpcServer;
use storefs_testkit::grpc::{Kind, memory_services, quick_config};
use storefs_testkit::suites::blob::{put_blob, try_read_blob};
use tokio::io::AsyncWriteExt;

fn with_token(url: &str, token: Option<&str>) -> storefs_grpc::GrpcServices {
    let config = ClientConfig {
        token: token.map(|t| Token::new(t).unwrap()),
        ..quick_config()
    };
    storefs_grpc::connect(url, config).unwrap()
}

fn permission_denied(e: &Error) -> bool {
    matches!(e, Error::Io(io) if io.kind() == ErrorKind::PermissionDenied)
}

#[tokio::test]
async fn writes_need_the_write_token_reads_are_open() {
    let config = ServerConfig {
        auth: AuthPolicy {
            read: None,
            write: Some(Token::new("s3cret-w").unwrap()),
        },
        ..ServerConfig::default()
    };
    let server = GrpcServer::start(Kind::Tcp, memory_services(), config).await;
    let anonymous = with_token(&server.url, None);
    let wrong = with_token(&server.url, Some("guess"));
    let writer = with_token(&server.url, Some("s3cret-w"));

    // Without a token, or with a wrong one, a blob upload is refused.
    for c in [&anonymous, &wrong] {
        let mut w = c.blob.open_write().await;
        let _ = w.write_all(b"not allowed").await; // may or may not fail yet
        let err = w.close().await.unwrap_err();
        assert!(permission_denied(&err), "expected a refusal, got {err:?}");
        let err = c.directory.put(Directory::new()).await.unwrap_err();
        assert!(permission_denied(&err), "expected a refusal, got {err:?}");
    }
    assert!(
        !anonymous
            .blob
            .has(&B3Digest::of(b"not allowed"))
            .await
            .unwrap()
    );

    // With it, accepted; and anyone may read.
    let d = put_blob(writer.blob.as_ref(), b"allowed").await;
    assert_eq!(
        writer.directory.put(Directory::new()).await.unwrap(),
        Directory::new().digest()
    );
    assert_eq!(
        try_read_blob(anonymous.blob.as_ref(), &d).await.unwrap(),
        b"allowed"
    );
    assert_eq!(
        anonymous
            .directory
            .get(&Directory::new().digest())
            .await
            .unwrap(),
        Some(Directory::new())
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_read_token_closes_reads() {
    let config = ServerConfig {
        auth: AuthPolicy {
            read: Some(Token::new("r").unwrap()),
            write: Some(Token::new("w").unwrap()),
        },
        ..ServerConfig::default()
    };
    let server = GrpcServer::start(Kind::Unix, memory_services(), config).await;
    let anonymous = with_token(&server.url, None);
    let reader = with_token(&server.url, Some("r"));
    let writer = with_token(&server.url, Some("w"));
    let d = put_blob(writer.blob.as_ref(), b"data").await;

    let err = anonymous.blob.has(&d).await.unwrap_err();
    assert!(permission_denied(&err), "{err:?}");
    assert!(reader.blob.has(&d).await.unwrap());
    assert!(
        writer.blob.has(&d).await.unwrap(),
        "the write token grants reads"
    );
    // The read token does not grant writes.
    let err = reader.directory.put(Directory::new()).await.unwrap_err();
    assert!(permission_denied(&err), "{err:?}");
    server.stop().await.unwrap();
}
