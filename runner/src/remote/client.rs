//! A client of an REAPI v2 service: content-addressable storage, action
//! cache and execution, over one gRPC channel.
//!
//! Every blob read from the service is checked against its digest before
//! anything uses it: a store that hands back other bytes than it was given
//! (tampering, corruption, a bug) is refused, never believed.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream::byte_stream_client::ByteStreamClient;
use bazel_remote_apis::google::bytestream::{ReadRequest, WriteRequest};
use prost::Message;
use re::action_cache_client::ActionCacheClient;
use re::content_addressable_storage_client::ContentAddressableStorageClient;
use re::execution_client::ExecutionClient;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::action::{digest_of, Source};

/// The largest request or batch the client sends or reads at once; bigger
/// blobs go through ByteStream. Below the 4 MiB gRPC default, with room
/// for the envelope.
const MAX_BATCH: usize = 3 << 20;
/// ByteStream chunk size.
const CHUNK: usize = 1 << 20;
/// The largest message the client accepts.
const MAX_MESSAGE: usize = 64 << 20;
/// How long the service may stay silent: to complete the connection, to
/// answer a call, or between two messages of a stream it sends. An upload
/// through ByteStream has one more second per MiB it sends. A service
/// that accepts connections and never answers (hung, or not a REAPI
/// service) is given up on after this; a run's client then asks it nothing
/// more ([`Client::giving_up_when_silent`]).
const SILENCE: Duration = Duration::from_secs(30);

/// A connection to one instance of an REAPI service.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    instance: String,
    /// `authorization: Bearer ...`, when the service needs a token.
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    endpoint: String,
    /// For a run's client: set when a call went unanswered for
    /// [`SILENCE`], and every later call fails at once instead of waiting as
    /// long again. `None` for a worker, which lives on past one bad call.
    silent: Option<Arc<AtomicBool>>,
}

/// Why blobs were not uploaded.
#[derive(Debug)]
pub enum Upload {
    /// One holds a secret value of the run: nothing of the step may leave
    /// this machine.
    Secret,
    /// The store or the disk failed, in words.
    Failed(String),
}

/// A gRPC error in words, with the call it came from.
fn failed(call: &str, status: &tonic::Status) -> String {
    format!("{call}: {} ({:?})", status.message(), status.code())
}

impl Client {
    /// Connects to `endpoint` (`grpc://host:port`, or `grpcs://` for TLS
    /// with the web's root certificates) and instance `instance`.
    ///
    /// # Errors
    /// When the endpoint is malformed or cannot be reached.
    pub async fn connect(endpoint: &str, instance: &str, token: Option<&str>) -> Result<Client, String> {
        let (url, tls) = if let Some(rest) = endpoint.strip_prefix("grpc://") {
            (format!("http://{rest}"), false)
        } else if let Some(rest) = endpoint.strip_prefix("grpcs://") {
            (format!("https://{rest}"), true)
        } else {
            return Err(format!("`{endpoint}` is not a grpc:// or grpcs:// address"));
        };
        let mut channel = Endpoint::from_shared(url)
            .map_err(|e| format!("`{endpoint}` is not an address: {e}"))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true);
        if tls {
            channel = channel
                .tls_config(ClientTlsConfig::new().with_webpki_roots())
                .map_err(|e| format!("cannot set up TLS for `{endpoint}`: {e}"))?;
        }
        let channel = tokio::time::timeout(SILENCE, channel.connect())
            .await
            .map_err(|_| format!("`{endpoint}` did not complete the connection within {} s", SILENCE.as_secs()))?
            .map_err(|e| format!("cannot reach `{endpoint}`: {e}"))?;
        let token = match token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| "the remote token is not a valid header value".to_string())?,
            ),
            None => None,
        };
        Ok(Client { channel, instance: instance.to_string(), token, endpoint: endpoint.to_string(), silent: None })
    }

    /// The address it was connected to, for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The channel, for the Bots API a worker speaks on it.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A request carrying the token, if any.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("authorization", token.clone());
        }
        request
    }

    /// This client, asking the service nothing more once it has left a call
    /// unanswered for [`SILENCE`]: a run then goes on without it (each step
    /// looked up and stored locally only) instead of waiting at every step.
    #[must_use]
    pub fn giving_up_when_silent(mut self) -> Client {
        self.silent = Some(Arc::default());
        self
    }

    /// `answer`, the reply to call `call`, unless the service stays silent
    /// for `limit`, or went silent earlier in this run.
    ///
    /// # Errors
    /// Why there is no answer, in words; the service's own refusal is
    /// returned inside, for the caller to read.
    async fn within<T>(
        &self,
        call: &str,
        limit: Duration,
        answer: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<Result<T, tonic::Status>, String> {
        if self.silent.as_ref().is_some_and(|silent| silent.load(Ordering::Relaxed)) {
            return Err(format!("{call}: not asked, `{}` stopped answering earlier in this run", self.endpoint));
        }
        match tokio::time::timeout(limit, answer).await {
            Ok(answer) => Ok(answer),
            Err(_) => {
                let mut why = format!("{call}: `{}` did not answer within {} s", self.endpoint, limit.as_secs());
                if let Some(silent) = &self.silent {
                    silent.store(true, Ordering::Relaxed);
                    why.push_str("; it is not asked again in this run");
                }
                Err(why)
            }
        }
    }

    fn cas(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    fn bytestream(&self) -> ByteStreamClient<Channel> {
        ByteStreamClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    /// The action cache's result for `action`, `None` when it has none.
    ///
    /// # Errors
    /// When the service cannot be asked.
    pub async fn get_action_result(&self, action: &re::Digest) -> Result<Option<re::ActionResult>, String> {
        let request = re::GetActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.clone()),
            inline_stdout: false,
            inline_stderr: false,
            ..Default::default()
        };
        let mut cache = ActionCacheClient::new(self.channel.clone());
        match self.within("GetActionResult", SILENCE, cache.get_action_result(self.request(request))).await? {
            Ok(result) => Ok(Some(result.into_inner())),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(failed("GetActionResult", &status)),
        }
    }

    /// Files `result` under `action` in the action cache.
    ///
    /// # Errors
    /// When the service refuses it.
    pub async fn update_action_result(&self, action: &re::Digest, result: re::ActionResult) -> Result<(), String> {
        let request = re::UpdateActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.clone()),
            action_result: Some(result),
            ..Default::default()
        };
        let mut cache = ActionCacheClient::new(self.channel.clone());
        self.within("UpdateActionResult", SILENCE, cache.update_action_result(self.request(request)))
            .await?
            .map(|_| ())
            .map_err(|status| failed("UpdateActionResult", &status))
    }

    /// Uploads every blob of `blobs` the store does not have, unless one
    /// holds a value of `secrets` (then nothing more is sent).
    ///
    /// # Errors
    /// When a blob cannot be read, holds a secret value, or the store
    /// refuses one.
    pub async fn upload_missing(
        &self,
        blobs: &BTreeMap<String, (re::Digest, Source)>,
        secrets: &crate::secrets::Secrets,
    ) -> Result<usize, Upload> {
        let mut missing = Vec::new();
        let digests: Vec<re::Digest> = blobs.values().map(|(d, _)| d.clone()).collect();
        for group in digests.chunks(10_000) {
            let request = re::FindMissingBlobsRequest {
                instance_name: self.instance.clone(),
                blob_digests: group.to_vec(),
                ..Default::default()
            };
            let mut cas = self.cas();
            let response = self
                .within("FindMissingBlobs", SILENCE, cas.find_missing_blobs(self.request(request)))
                .await
                .map_err(Upload::Failed)?
                .map_err(|s| Upload::Failed(failed("FindMissingBlobs", &s)))?;
            missing.extend(response.into_inner().missing_blob_digests);
        }
        let mut batch: Vec<(re::Digest, Vec<u8>)> = Vec::new();
        let mut batch_size = 0;
        for digest in &missing {
            let Some((_, source)) = blobs.get(&digest.hash) else { continue };
            let bytes = match source {
                Source::Bytes(bytes) => bytes.clone(),
                Source::File(path) => fs_err::read(path)
                    .map_err(|e| Upload::Failed(format!("cannot read `{}` to upload it: {e}", path.display())))?,
            };
            // A file that changed since it was hashed would be stored under
            // a digest it does not have: refuse rather than mislabel it.
            if digest_of(&bytes) != *digest {
                return Err(Upload::Failed(format!(
                    "an input changed while it was being uploaded ({}); run again",
                    digest.hash
                )));
            }
            if secrets.appears_in(&bytes) {
                return Err(Upload::Secret);
            }
            if bytes.len() > MAX_BATCH {
                self.write_stream(digest, &bytes).await.map_err(Upload::Failed)?;
                continue;
            }
            if batch_size + bytes.len() > MAX_BATCH {
                self.batch_update(std::mem::take(&mut batch)).await.map_err(Upload::Failed)?;
                batch_size = 0;
            }
            batch_size += bytes.len();
            batch.push((digest.clone(), bytes));
        }
        if !batch.is_empty() {
            self.batch_update(batch).await.map_err(Upload::Failed)?;
        }
        Ok(missing.len())
    }

    /// Uploads `blobs` (bytes in hand) the store does not have.
    ///
    /// # Errors
    /// As [`Client::upload_missing`].
    pub async fn upload_bytes(&self, blobs: Vec<Vec<u8>>) -> Result<(), String> {
        let map = blobs
            .into_iter()
            .map(|bytes| {
                let digest = digest_of(&bytes);
                (digest.hash.clone(), (digest, Source::Bytes(bytes)))
            })
            .collect();
        match self.upload_missing(&map, &crate::secrets::Secrets::default()).await {
            Ok(_) => Ok(()),
            Err(Upload::Failed(e)) => Err(e),
            Err(Upload::Secret) => Err("a blob holds a secret value".into()),
        }
    }

    async fn batch_update(&self, blobs: Vec<(re::Digest, Vec<u8>)>) -> Result<(), String> {
        let request = re::BatchUpdateBlobsRequest {
            instance_name: self.instance.clone(),
            requests: blobs
                .into_iter()
                .map(|(digest, data)| re::batch_update_blobs_request::Request {
                    digest: Some(digest),
                    data,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let mut cas = self.cas();
        let response = self
            .within("BatchUpdateBlobs", SILENCE, cas.batch_update_blobs(self.request(request)))
            .await?
            .map_err(|s| failed("BatchUpdateBlobs", &s))?;
        for answer in response.into_inner().responses {
            if let Some(status) = answer.status.filter(|s| s.code != 0) {
                return Err(format!("the store refused a blob: {}", status.message));
            }
        }
        Ok(())
    }

    /// What ByteStream resource names start with: `INSTANCE/`, or nothing
    /// for the default instance.
    fn resource_prefix(&self) -> String {
        if self.instance.is_empty() {
            String::new()
        } else {
            format!("{}/", self.instance)
        }
    }

    async fn write_stream(&self, digest: &re::Digest, bytes: &[u8]) -> Result<(), String> {
        let name = format!(
            "{}uploads/{}/blobs/{}/{}",
            self.resource_prefix(),
            uuid::Uuid::new_v4(),
            digest.hash,
            digest.size_bytes
        );
        let chunks: Vec<WriteRequest> = bytes
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, chunk)| WriteRequest {
                resource_name: if i == 0 { name.clone() } else { String::new() },
                write_offset: (i * CHUNK) as i64,
                finish_write: (i + 1) * CHUNK >= bytes.len(),
                data: chunk.to_vec(),
            })
            .collect();
        let request = self.request(tokio_stream::iter(chunks));
        // The answer comes once everything is sent: a second per MiB more.
        let limit = SILENCE + Duration::from_secs((bytes.len() >> 20) as u64);
        let mut bytestream = self.bytestream();
        self.within("ByteStream.Write", limit, bytestream.write(request))
            .await?
            .map(|_| ())
            .map_err(|s| failed("ByteStream.Write", &s))
    }

    /// The blobs `digests`, each checked against its digest.
    ///
    /// # Errors
    /// When one is missing, or is not what its digest says.
    pub async fn download(&self, digests: &[re::Digest]) -> Result<HashMap<String, Vec<u8>>, String> {
        let mut found = HashMap::new();
        let mut batch: Vec<re::Digest> = Vec::new();
        let mut batch_size = 0;
        let mut unique: Vec<&re::Digest> = digests.iter().collect();
        unique.sort_by(|a, b| a.hash.cmp(&b.hash));
        unique.dedup_by(|a, b| a.hash == b.hash);
        for digest in unique {
            let size = usize::try_from(digest.size_bytes).unwrap_or(usize::MAX);
            if size > MAX_BATCH {
                let bytes = self.read_stream(digest).await?;
                found.insert(digest.hash.clone(), checked(digest, bytes)?);
                continue;
            }
            if batch_size + size > MAX_BATCH {
                self.batch_read(std::mem::take(&mut batch), &mut found).await?;
                batch_size = 0;
            }
            batch_size += size;
            batch.push(digest.clone());
        }
        if !batch.is_empty() {
            self.batch_read(batch, &mut found).await?;
        }
        Ok(found)
    }

    async fn batch_read(&self, digests: Vec<re::Digest>, found: &mut HashMap<String, Vec<u8>>) -> Result<(), String> {
        let request = re::BatchReadBlobsRequest { instance_name: self.instance.clone(), digests, ..Default::default() };
        let mut cas = self.cas();
        let response = self
            .within("BatchReadBlobs", SILENCE, cas.batch_read_blobs(self.request(request)))
            .await?
            .map_err(|s| failed("BatchReadBlobs", &s))?;
        for answer in response.into_inner().responses {
            let digest = answer.digest.unwrap_or_default();
            if let Some(status) = answer.status.filter(|s| s.code != 0) {
                return Err(format!(
                    "blob {}/{} is not in the store: {}",
                    digest.hash, digest.size_bytes, status.message
                ));
            }
            let bytes = checked(&digest, answer.data)?;
            found.insert(digest.hash, bytes);
        }
        Ok(())
    }

    async fn read_stream(&self, digest: &re::Digest) -> Result<Vec<u8>, String> {
        let request = ReadRequest {
            resource_name: format!("{}blobs/{}/{}", self.resource_prefix(), digest.hash, digest.size_bytes),
            read_offset: 0,
            read_limit: 0,
        };
        let mut bytestream = self.bytestream();
        let mut stream = self
            .within("ByteStream.Read", SILENCE, bytestream.read(self.request(request)))
            .await?
            .map_err(|s| failed("ByteStream.Read", &s))?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = self
            .within("ByteStream.Read", SILENCE, stream.message())
            .await?
            .map_err(|s| failed("ByteStream.Read", &s))?
        {
            bytes.extend_from_slice(&chunk.data);
            if bytes.len() as i64 > digest.size_bytes {
                break;
            }
        }
        Ok(bytes)
    }

    /// Runs `action` on the service's workers and waits for its result
    /// (following the operation until it is done, reconnecting when the
    /// service ends the stream).
    ///
    /// # Errors
    /// When the service cannot run it or the operation fails.
    pub async fn execute(&self, action: &re::Digest, skip_cache_lookup: bool) -> Result<re::ExecuteResponse, String> {
        let request = re::ExecuteRequest {
            instance_name: self.instance.clone(),
            skip_cache_lookup,
            action_digest: Some(action.clone()),
            ..Default::default()
        };
        let mut execution = ExecutionClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE);
        let mut stream =
            execution.execute(self.request(request)).await.map_err(|s| failed("Execute", &s))?.into_inner();
        let mut name = String::new();
        loop {
            match stream.message().await {
                Ok(Some(operation)) => {
                    name.clone_from(&operation.name);
                    if operation.done {
                        return finished(operation);
                    }
                }
                // The service may close a stream that waited long; the
                // operation goes on: wait for it again.
                Ok(None) | Err(_) if !name.is_empty() => {
                    let request = re::WaitExecutionRequest { name: name.clone() };
                    stream = execution
                        .wait_execution(self.request(request))
                        .await
                        .map_err(|s| failed("WaitExecution", &s))?
                        .into_inner();
                }
                Ok(None) => return Err("Execute: the service ended the operation without a result".into()),
                Err(status) => return Err(failed("Execute", &status)),
            }
        }
    }
}

/// `bytes` if they are what `digest` names.
fn checked(digest: &re::Digest, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if digest_of(&bytes) != *digest {
        return Err(format!(
            "blob {}/{} from the store is not what its digest says; refused (the store is corrupt or was tampered with)",
            digest.hash, digest.size_bytes
        ));
    }
    Ok(bytes)
}

/// The ExecuteResponse of a finished operation.
fn finished(operation: bazel_remote_apis::google::longrunning::Operation) -> Result<re::ExecuteResponse, String> {
    use bazel_remote_apis::google::longrunning::operation::Result as Outcome;
    match operation.result {
        Some(Outcome::Response(any)) => re::ExecuteResponse::decode(any.value.as_slice())
            .map_err(|e| format!("Execute: an unreadable response: {e}")),
        Some(Outcome::Error(status)) => Err(format!("Execute: {} (code {})", status.message, status.code)),
        None => Err("Execute: the operation finished without a result".into()),
    }
}
