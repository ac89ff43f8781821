//! The Gemini embedder against a local server that answers as
//! `batchEmbedContents` does (wiremock): the request it sends, the
//! normalization, retries on 429 / 5xx, the request budget, bad answers.

use std::time::Duration;

use mockinterview_db::embedder::gemini::{GeminiConfig, GeminiEmbedder};
use mockinterview_db::embedder::{Embedder, Purpose};
use mockinterview_db::{EmbeddingModel, Error};
use serde_json::{Value as Json, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const PATH: &str = "/v1beta/models/gemini-embedding-001:batchEmbedContents";

fn config(server: &MockServer, dims: u32) -> GeminiConfig {
    let mut c = GeminiConfig::new(
        "test-key",
        EmbeddingModel::new("gemini-embedding-001", dims).unwrap(),
    );
    c.base_url = format!("{}/v1beta", server.uri());
    c.initial_backoff = Duration::from_millis(1);
    c.max_backoff = Duration::from_millis(5);
    c.max_retries = 3;
    c
}

/// Answers each request with one vector per text: `[2, 0, 0, ...]`, or
/// `scale` times text i+1 at position i, so order and normalization show.
struct Answer;

impl Respond for Answer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Json = serde_json::from_slice(&request.body).unwrap();
        let requests = body["requests"].as_array().unwrap();
        let embeddings: Vec<Json> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let dims = r["outputDimensionality"].as_u64().unwrap() as usize;
                let mut v = vec![0.0_f32; dims];
                v[i % dims] = 2.0;
                v[(i + 1) % dims] = 2.0;
                json!({ "values": v })
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({ "embeddings": embeddings }))
    }
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("text {i}")).collect()
}

#[tokio::test]
async fn sends_the_documented_request_and_normalizes_truncated_vectors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(header("x-goog-api-key", "test-key"))
        .respond_with(Answer)
        .expect(1)
        .mount(&server)
        .await;
    let e = GeminiEmbedder::new(config(&server, 768)).unwrap();
    let out = e.embed(&texts(3), Purpose::Query).await.unwrap();
    assert_eq!(out.len(), 3);
    let half = 1.0 / 2.0_f32.sqrt();
    assert!((out[1].as_slice()[1] - half).abs() < 1e-6);
    assert!((out[1].as_slice()[2] - half).abs() < 1e-6);
    assert_eq!(out[0].model(), e.model());

    let sent: Json =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    let first = &sent["requests"][0];
    assert_eq!(first["model"], "models/gemini-embedding-001");
    assert_eq!(first["outputDimensionality"], 768);
    assert_eq!(first["taskType"], "RETRIEVAL_QUERY");
    assert_eq!(first["content"]["parts"][0]["text"], "text 0");
    // The key is in a header, never in the URL.
    assert!(
        !server.received_requests().await.unwrap()[0]
            .url
            .as_str()
            .contains("test-key")
    );
}

#[tokio::test]
async fn the_full_3072_output_is_kept_as_google_normalized_it() {
    let server = MockServer::start().await;
    Mock::given(path(PATH))
        .respond_with(Answer)
        .mount(&server)
        .await;
    let e = GeminiEmbedder::new(config(&server, 3072)).unwrap();
    let out = e.embed(&texts(1), Purpose::Document).await.unwrap();
    assert_eq!(out[0].as_slice().len(), 3072);
    assert_eq!(out[0].as_slice()[0], 2.0);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_then_reported() {
    let server = MockServer::start().await;
    // Two 429s (one with Retry-After: 0), then success.
    Mock::given(path(PATH))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path(PATH))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path(PATH))
        .respond_with(Answer)
        .mount(&server)
        .await;
    let e = GeminiEmbedder::new(config(&server, 768)).unwrap();
    assert_eq!(
        e.embed(&texts(2), Purpose::Document).await.unwrap().len(),
        2
    );
    assert_eq!(e.requests_sent(), 3);

    // Always failing: 1 + max_retries requests, then a retryable error.
    let down = MockServer::start().await;
    Mock::given(path(PATH))
        .respond_with(ResponseTemplate::new(500).set_body_string("internal"))
        .mount(&down)
        .await;
    let e = GeminiEmbedder::new(config(&down, 768)).unwrap();
    let err = e.embed(&texts(2), Purpose::Document).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Embedder {
                retryable: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("gave up after 3 retries"), "{err}");
    assert_eq!(down.received_requests().await.unwrap().len(), 4);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_say_what_to_check() {
    let server = MockServer::start().await;
    Mock::given(path(PATH))
        .respond_with(ResponseTemplate::new(403).set_body_string("API key not valid"))
        .mount(&server)
        .await;
    let e = GeminiEmbedder::new(config(&server, 768)).unwrap();
    let err = e.embed(&texts(1), Purpose::Document).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Embedder {
                retryable: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("GEMINI_API_KEY"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_request_budget_stops_calls_before_sending() {
    let server = MockServer::start().await;
    Mock::given(path(PATH))
        .respond_with(Answer)
        .mount(&server)
        .await;
    let mut c = config(&server, 768);
    c.request_budget = Some(2);
    let e = GeminiEmbedder::new(c).unwrap();
    e.embed(&texts(1), Purpose::Document).await.unwrap();
    e.embed(&texts(1), Purpose::Document).await.unwrap();
    let err = e.embed(&texts(1), Purpose::Document).await.unwrap_err();
    assert!(err.to_string().contains("budget"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn wrong_answers_are_errors_not_embeddings() {
    for body in [
        json!({ "embeddings": [{ "values": vec![0.5_f32; 768] }] }),
        json!({ "embeddings": [{ "values": [0.5, 0.5] }, { "values": [0.5, 0.5] }] }),
        json!({ "embeddings": [{ "values": vec![0.0_f32; 768] }, { "values": vec![0.5_f32; 768] }] }),
        json!({ "unexpected": true }),
    ] {
        let server = MockServer::start().await;
        Mock::given(path(PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(body.clone()))
            .mount(&server)
            .await;
        let e = GeminiEmbedder::new(config(&server, 768)).unwrap();
        let err = e.embed(&texts(2), Purpose::Document).await.unwrap_err();
        assert!(matches!(err, Error::Embedder { .. }), "{body}: {err}");
    }
    // More texts than a request takes: refused before sending.
    let server = MockServer::start().await;
    let e = GeminiEmbedder::new(config(&server, 768)).unwrap();
    let err = e.embed(&texts(101), Purpose::Document).await.unwrap_err();
    assert!(matches!(err, Error::Validation { .. }), "{err}");
}
