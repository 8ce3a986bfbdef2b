//! What Cleanroom's model-driven plugins share: [`chat`], the OpenAI
//! chat-completions wire format (request bodies, replies and tool calls,
//! transcript lines), and [`http`], a synchronous HTTP client over
//! `wasi:http/outgoing-handler` behind a [`http::Transport`] trait, so the
//! plugins' loops run against a scripted transport in host tests.
//!
//! The host decides whether a request may leave at all (the step's
//! `allow_hosts`), may add the API key itself (`secret_headers`), and
//! counts requests against the step's `max_requests`.

pub mod chat;
pub mod http;
