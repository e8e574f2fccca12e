//! `snix.castore.v1.DirectoryService` over any [`DirectoryService`].

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use storefs_castore::Directory;
use storefs_castore::DirectoryService;
use storefs_castore::proto;
use tonic::{Request, Response, Status, Streaming};

use super::blob::parse_digest;
use crate::proto::castore::{
    GetDirectoryRequest, PutDirectoryResponse, directory_service_server, get_directory_request,
};
use crate::status::to_status;

/// Serves directories from a [`DirectoryService`].
pub(crate) struct DirectoryServer {
    directories: Arc<dyn DirectoryService>,
}

impl DirectoryServer {
    pub(crate) fn new(directories: Arc<dyn DirectoryService>) -> Self {
        Self { directories }
    }
}

#[tonic::async_trait]
impl directory_service_server::DirectoryService for DirectoryServer {
    type GetStream = BoxStream<'static, Result<proto::Directory, Status>>;

    #[tracing::instrument(skip_all, fields(digest, recursive))]
    async fn get(
        &self,
        request: Request<GetDirectoryRequest>,
    ) -> Result<Response<Self::GetStream>, Status> {
        let req = request.into_inner();
        let Some(get_directory_request::ByWhat::Digest(raw)) = req.by_what else {
            return Err(Status::invalid_argument("Get: by_what is not set"));
        };
        let digest = parse_digest("Get", &raw)?;
        let span = tracing::Span::current();
        span.record("digest", tracing::field::display(&digest));
        span.record("recursive", req.recursive);
        let op = format!("Get {digest}");
        if !req.recursive {
            let dir = self
                .directories
                .get(&digest)
                .await
                .map_err(|e| to_status(&op, e))?
                .ok_or_else(|| Status::not_found(format!("{op}: no such directory")))?;
            let one = futures::stream::once(async move { Ok(dir.to_proto()) });
            return Ok(Response::new(one.boxed()));
        }
        let mut closure = self.directories.get_recursive(&digest);
        // An absent root is an empty stream from the backend; say so with a
        // status rather than an empty answer.
        let first = match closure.next().await {
            None => return Err(Status::not_found(format!("{op}: no such directory"))),
            Some(Err(e)) => return Err(to_status(&op, e)),
            Some(Ok(dir)) => dir,
        };
        let rest = closure.map(move |r| r.map(|d| d.to_proto()).map_err(|e| to_status(&op, e)));
        let stream = futures::stream::once(async move { Ok(first.to_proto()) }).chain(rest);
        Ok(Response::new(stream.boxed()))
    }

    #[tracing::instrument(skip_all, fields(root, count))]
    async fn put(
        &self,
        request: Request<Streaming<proto::Directory>>,
    ) -> Result<Response<PutDirectoryResponse>, Status> {
        let mut stream = request.into_inner();
        let mut putter = self.directories.put_multiple_start();
        let mut count: usize = 0;
        while let Some(msg) = stream.message().await? {
            let dir = Directory::try_from(msg).map_err(|e| {
                Status::invalid_argument(format!("Put: directory #{count} is invalid: {e}"))
            })?;
            let digest = dir.digest();
            putter
                .put(dir)
                .await
                .map_err(|e| to_status(&format!("Put: directory #{count} ({digest})"), e))?;
            count += 1;
        }
        if count == 0 {
            return Err(Status::invalid_argument("Put: no directories were sent"));
        }
        let root = putter.close().await.map_err(|e| to_status("Put", e))?;
        let span = tracing::Span::current();
        span.record("root", tracing::field::display(&root));
        span.record("count", count);
        tracing::debug!("closure stored");
        Ok(Response::new(PutDirectoryResponse {
            root_digest: root.to_bytes(),
        }))
    }
}
