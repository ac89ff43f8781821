//! Google's Gemini embedding API (`models/{model}:batchEmbedContents`),
//! behind feature `gemini`.
//!
//! - The key comes from the environment (`GEMINI_API_KEY`) and is sent in
//!   the `x-goog-api-key` header, never in the URL.
//! - `outputDimensionality` is the model's dimension count; below 3,072
//!   Google returns truncated vectors that the caller must normalize, which
//!   this does (Google normalizes the full 3,072 itself).
//! - 429 and 5xx answers and network failures are retried with exponential
//!   backoff (honouring `Retry-After`), up to [`GeminiConfig::max_retries`]
//!   times; every HTTP request, retries included, counts against
//!   [`GeminiConfig::request_budget`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Embedder, Purpose, check_batch, normalize};
use crate::embedding::{Embedding, EmbeddingModel};
use crate::error::{Error, Result};

/// Environment variable holding the API key.
pub const API_KEY_ENV: &str = "GEMINI_API_KEY";
/// Environment variable overriding the API's base URL (a proxy, a test
/// server).
pub const API_BASE_ENV: &str = "GEMINI_API_BASE";
/// The public endpoint.
pub const DEFAULT_API_BASE: &str = "https://generativelanguage.googleapis.com/v1beta";
/// Most texts per `batchEmbedContents` request (the API's limit).
pub const MAX_BATCH: usize = 100;

/// How to reach the API: configuration as data, nothing connects.
#[derive(Clone)]
#[non_exhaustive]
pub struct GeminiConfig {
    /// The API key.
    pub api_key: String,
    /// Base URL, without a trailing slash.
    pub base_url: String,
    /// The model (its name, e.g. `gemini-embedding-001`, and its
    /// dimension count: `outputDimensionality`).
    pub model: EmbeddingModel,
    /// Texts per request (at most [`MAX_BATCH`]).
    pub max_batch: usize,
    /// Retries of one request after a 429, a 5xx or a network failure.
    pub max_retries: u32,
    /// Wait before the first retry; doubled each time.
    pub initial_backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// HTTP requests this embedder may send in its life, retries included
    /// (`None`: no limit). Past it, calls fail without sending anything.
    pub request_budget: Option<u64>,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
}

impl std::fmt::Debug for GeminiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiConfig")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("max_batch", &self.max_batch)
            .field("max_retries", &self.max_retries)
            .field("request_budget", &self.request_budget)
            .finish_non_exhaustive()
    }
}

impl GeminiConfig {
    /// Defaults for `model` with `api_key`: the public endpoint, batches of
    /// 100, 5 retries from 500 ms up to 30 s, no budget, 60 s per request.
    pub fn new(api_key: impl Into<String>, model: EmbeddingModel) -> Self {
        Self {
            api_key: api_key.into(),
            base_url: DEFAULT_API_BASE.into(),
            model,
            max_batch: MAX_BATCH,
            max_retries: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            request_budget: None,
            timeout: Duration::from_secs(60),
        }
    }

    /// [`GeminiConfig::new`] with the key from `GEMINI_API_KEY` and the
    /// base URL from `GEMINI_API_BASE` if set.
    ///
    /// # Errors
    /// [`Error::Config`] when `GEMINI_API_KEY` is unset or empty.
    pub fn from_env(model: EmbeddingModel) -> Result<Self> {
        let key = std::env::var(API_KEY_ENV)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{API_KEY_ENV} is not set: create a key at https://aistudio.google.com/apikey"
                ))
            })?;
        let mut config = Self::new(key.trim(), model);
        if let Ok(base) = std::env::var(API_BASE_ENV) {
            config.base_url = base.trim().trim_end_matches('/').to_owned();
        }
        Ok(config)
    }
}

/// [`Embedder`] calling Gemini's `batchEmbedContents`.
#[derive(Debug)]
pub struct GeminiEmbedder {
    config: GeminiConfig,
    http: reqwest::Client,
    sent: AtomicU64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchRequest<'a> {
    requests: Vec<EmbedRequest<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'a> {
    model: String,
    content: Content<'a>,
    task_type: &'static str,
    output_dimensionality: u32,
}

#[derive(Serialize)]
struct Content<'a> {
    parts: [Part<'a>; 1],
}

#[derive(Serialize)]
struct Part<'a> {
    text: &'a str,
}

#[derive(Deserialize)]
struct BatchResponse {
    #[serde(default)]
    embeddings: Vec<Values>,
}

#[derive(Deserialize)]
struct Values {
    values: Vec<f32>,
}

impl GeminiEmbedder {
    /// An embedder for `config`.
    ///
    /// # Errors
    /// [`Error::Config`] for a batch size of 0 or over [`MAX_BATCH`], or
    /// when the HTTP client cannot be built.
    pub fn new(config: GeminiConfig) -> Result<Self> {
        if config.max_batch == 0 || config.max_batch > MAX_BATCH {
            return Err(Error::Config(format!(
                "GeminiConfig::max_batch is {}; the API takes 1 to {MAX_BATCH} texts per request",
                config.max_batch
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            config,
            http,
            sent: AtomicU64::new(0),
        })
    }

    /// HTTP requests sent so far, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn failed(&self, reason: String, retryable: bool) -> Error {
        Error::Embedder {
            model: self.config.model.to_string(),
            reason,
            retryable,
        }
    }

    /// Takes one request from the budget.
    fn spend(&self) -> Result<()> {
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        match self.config.request_budget {
            Some(budget) if n > budget => {
                self.sent.fetch_sub(1, Ordering::Relaxed);
                Err(self.failed(
                    format!(
                        "the request budget of {budget} requests is spent \
                         (GeminiConfig::request_budget); nothing was sent"
                    ),
                    false,
                ))
            }
            _ => Ok(()),
        }
    }

    /// The wait before retry `attempt` (1-based): `Retry-After` if given,
    /// else exponential.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .config
            .initial_backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(16));
        retry_after.unwrap_or(exp).min(self.config.max_backoff)
    }

    async fn send(&self, body: &BatchRequest<'_>) -> Result<BatchResponse> {
        let url = format!(
            "{}/models/{}:batchEmbedContents",
            self.config.base_url,
            self.config.model.name()
        );
        let mut attempt = 0;
        loop {
            self.spend()?;
            let response = self
                .http
                .post(&url)
                .header("x-goog-api-key", &self.config.api_key)
                .json(body)
                .send()
                .await;
            let (reason, retry_after) = match response {
                Ok(r) if r.status().is_success() => {
                    return r.json::<BatchResponse>().await.map_err(|e| {
                        self.failed(format!("the answer is not an embedding batch: {e}"), true)
                    });
                }
                Ok(r) => {
                    let status = r.status();
                    let retry_after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = r.text().await.unwrap_or_default();
                    let text: String = text.chars().take(500).collect();
                    let reason = format!("HTTP {status}: {text}");
                    if !(status.as_u16() == 429 || status.is_server_error()) {
                        let hint = match status.as_u16() {
                            400 => "; check the model name and outputDimensionality",
                            401 | 403 => "; check GEMINI_API_KEY and the key's API restrictions",
                            404 => "; the model does not exist (or was shut down)",
                            _ => "",
                        };
                        return Err(self.failed(format!("{reason}{hint}"), false));
                    }
                    (reason, retry_after)
                }
                Err(e) => (format!("request failed: {e}"), None),
            };
            attempt += 1;
            if attempt > self.config.max_retries {
                return Err(self.failed(
                    format!(
                        "{reason} (gave up after {} retries)",
                        self.config.max_retries
                    ),
                    true,
                ));
            }
            let wait = self.backoff(attempt, retry_after);
            tracing::warn!(attempt, ?wait, %reason, "Gemini embedding request failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

impl Embedder for GeminiEmbedder {
    fn model(&self) -> &EmbeddingModel {
        &self.config.model
    }

    fn max_batch(&self) -> usize {
        self.config.max_batch
    }

    async fn embed(&self, texts: &[String], purpose: Purpose) -> Result<Vec<Embedding>> {
        check_batch(texts, self.config.max_batch)?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let model = &self.config.model;
        let task_type = match purpose {
            Purpose::Document => "RETRIEVAL_DOCUMENT",
            Purpose::Query => "RETRIEVAL_QUERY",
        };
        let body = BatchRequest {
            requests: texts
                .iter()
                .map(|t| EmbedRequest {
                    model: format!("models/{}", model.name()),
                    content: Content {
                        parts: [Part { text: t }],
                    },
                    task_type,
                    output_dimensionality: model.dimensions(),
                })
                .collect(),
        };
        let answer = self.send(&body).await?;
        if answer.embeddings.len() != texts.len() {
            return Err(self.failed(
                format!(
                    "{} embeddings for {} texts",
                    answer.embeddings.len(),
                    texts.len()
                ),
                false,
            ));
        }
        answer
            .embeddings
            .into_iter()
            .enumerate()
            .map(|(i, Values { mut values })| {
                // Google normalizes only the full 3,072-dimension output.
                if model.dimensions() != 3072 {
                    normalize(&mut values);
                }
                Embedding::new(model, values)
                    .map_err(|e| self.failed(format!("embedding {i} of the batch: {e}"), false))
            })
            .collect()
    }
}
