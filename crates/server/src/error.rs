//! API errors: every failure is a status code and `{"error": "<what to fix>"}`
//! (plus `"field"` when one input field is at fault).

use crate::serve::BodyTimedOut;
use crate::session_error::SessionError;
use crate::store::StoreError;
use crate::validate::FieldError;
use axum::Json;
use axum::body::HttpBody;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

/// Request bodies above this are refused with 413, unless the route sets a
/// smaller [`BodyLimit`].
pub const BODY_LIMIT: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    LengthRequired(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    GatewayTimeout(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The store failed: the client learns only that; the cause is logged
    /// when the answer is made.
    #[error("internal error: the database failed; see the control plane's log")]
    Store(#[source] StoreError),
    /// Refused for now (429 throttled, 503 busy); `Retry-After` says when
    /// to try again.
    #[error("{message}")]
    RetryLater {
        status: StatusCode,
        message: String,
        retry_after: std::time::Duration,
    },
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Field(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::LengthRequired(_) => StatusCode::LENGTH_REQUIRED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) | ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::RetryLater { status, .. } => *status,
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => ApiError::Conflict(format!("{what} already exists")),
            // The message names the key file and the fix, never a secret,
            // like MFA's (`auth/mfa/codes.rs`).
            sealed @ StoreError::Sealed { .. } => ApiError::Internal(sealed.to_string()),
            nul if nul.is_nul_in_text() => ApiError::BadRequest(
                "the request contains a NUL character (\\u0000), which the database cannot store \
                 or look up"
                    .into(),
            ),
            other => ApiError::Store(other),
        }
    }
}

/// The one place the session logic's refusals become HTTP answers.
impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        let message = err.to_string();
        match err {
            SessionError::Store(store) => store.into(),
            SessionError::NotFound => ApiError::NotFound(message),
            SessionError::Quota(_) => ApiError::Forbidden(message),
            SessionError::Placement(placement) if placement.is_outside_pools() => {
                ApiError::Forbidden(message)
            }
            SessionError::Placement(placement) if placement.is_bad_agent_id() => {
                FieldError::new("agent_id", message).into()
            }
            SessionError::Placement(_) => ApiError::Unavailable(message),
            SessionError::NoAgent
            | SessionError::CannotHibernate
            | SessionError::Ending { .. }
            | SessionError::AlreadyTerminated
            | SessionError::KeptChanging => ApiError::Conflict(message),
        }
    }
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "error": "ports[0].port: 70000 is not a port: use 1 to 65535",
    "field": "ports[0].port"
}))]
pub struct ErrorBody {
    /// What went wrong, and what to do about it.
    pub error: String,
    /// The input field at fault, when it is one field (`resources.memory`,
    /// `ports[0].port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            log_failure(&self);
        }
        let field = match &self {
            ApiError::Field(e) => Some(e.field.clone()),
            _ => None,
        };
        let retry_after = match &self {
            // Whole seconds, rounded up: never "try again in 0 s".
            ApiError::RetryLater { retry_after, .. } => {
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0))
            }
            _ => None,
        };
        let body = ErrorBody {
            error: self.to_string(),
            field,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, seconds.max(1).into());
        }
        response
    }
}

/// A 500 is the server's fault: its cause goes to the log, where the
/// operator looks (the client is told only to look there).
fn log_failure(err: &ApiError) {
    match err {
        ApiError::Store(cause) => tracing::error!(error = %cause, "store failure"),
        ApiError::Internal(cause) => tracing::error!(error = %cause, "internal error"),
        _ => {}
    }
}

/// A JSON request body whose errors name the offending field
/// (`resources.memory: invalid memory "2 gigs": …`) instead of a line/column.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::BadRequest(
                "send a JSON body with Content-Type: application/json".into(),
            ));
        }
        parse_json(&read_body(req).await?).map(ApiJson)
    }
}

/// A request body as bytes, with the same limits and JSON errors as
/// [`ApiJson`].
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        read_body(req).await.map(ApiBytes)
    }
}

/// A route's own limit on request bodies, below [`BODY_LIMIT`]; set it with
/// `.layer(Extension(BodyLimit(n)))`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Reads the whole body: 413 above the route's limit (at once when its
/// `Content-Length` says so), 408 when it does not arrive within the
/// body-read timeout (`serve::BodyTimedOut`).
async fn read_body(req: Request) -> ApiResult<Bytes> {
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(BODY_LIMIT, |own| own.0);
    let too_large = || {
        let limit = match limit % (1 << 20) {
            0 => format!("{} MiB", limit >> 20),
            _ => format!("{} KiB", limit.div_ceil(1 << 10)),
        };
        ApiError::PayloadTooLarge(format!(
            "the request body is too large: send at most {limit} here"
        ))
    };
    let body = req.into_body();
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    let err = match Limited::new(body, limit).collect().await {
        Ok(collected) => return Ok(collected.to_bytes()),
        Err(err) => err,
    };
    if err.is::<LengthLimitError>() {
        return Err(too_large());
    }
    Err(match caused_by::<BodyTimedOut>(&*err) {
        Some(BodyTimedOut(limit)) => ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} of its head: send it all at once",
            humantime::format_duration(*limit)
        )),
        None => ApiError::BadRequest(format!("cannot read the request body: {err}")),
    })
}

/// The first error of type `E` in the chain from `err` down its sources.
pub(crate) fn caused_by<'a, E: std::error::Error + 'static>(
    mut err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    loop {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        err = err.source()?;
    }
}

/// Query parameters whose errors come back as JSON 400s like any other.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))
    }
}

/// Path parameters whose errors come back as JSON 400s like any other
/// (axum's own `Path` answers an id that is not UTF-8 in plain text).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| match e.status() {
                // A route and its handler disagree: the server's fault.
                status if status.is_server_error() => ApiError::Internal(e.body_text()),
                _ => ApiError::BadRequest(format!("invalid path: {}", e.body_text())),
            })
    }
}

/// Parses a request body strictly: a field the type does not know, at any
/// depth, is refused rather than silently dropped (a misspelt `"memroy"`
/// would otherwise mean "no limit"), and so is anything after the value.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut unknown: Option<String> = None;
    let mut note = |path: serde_ignored::Path<'_>| {
        unknown.get_or_insert_with(|| field_path(&path));
    };
    let value = deserialize_named(serde_ignored::Deserializer::new(&mut de, &mut note))?;
    de.end().map_err(|e| {
        ApiError::BadRequest(format!(
            "the body continues after its JSON value ({}): send exactly one JSON value",
            strip_position(&e.to_string())
        ))
    })?;
    match unknown {
        Some(field) => Err(FieldError::new(
            field,
            "unknown field: remove it (docs/API.md lists the fields)",
        )
        .into()),
        None => Ok(value),
    }
}

/// A path the way every other error names fields: `ports[0].tls`.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            prefix if prefix.is_empty() => key.clone(),
            prefix => format!("{prefix}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// Deserializes with errors that name the offending field.
fn deserialize_named<'de, D, T>(de: D) -> ApiResult<T>
where
    D: serde::Deserializer<'de, Error = serde_json::Error>,
    T: serde::Deserialize<'de>,
{
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("the body is not valid JSON: {inner}")
        } else {
            strip_position(&inner.to_string())
        };
        if path == "." || path.is_empty() {
            ApiError::BadRequest(message)
        } else {
            ApiError::Field(FieldError::new(path, message))
        }
    })
}

/// serde_json appends " at line 1 column 40"; the field path says it better.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamspace_protocol::Resources;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Input {
        resources: Resources,
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse_json::<Input>(br#"{"resources": {"memory": "2 gigs"}}"#)
            .expect_err("invalid memory");
        match err {
            ApiError::Field(e) => {
                assert_eq!(e.field, "resources.memory");
                assert!(e.message.contains("512Mi"), "{}", e.message);
                assert!(!e.message.contains("line 1"), "{}", e.message);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_refused_at_every_depth() {
        let err = parse_json::<Input>(br#"{"resources": {"memroy": "1Gi"}}"#)
            .expect_err("a misspelt nested field");
        match err {
            ApiError::Field(e) => assert_eq!(e.field, "resources.memroy"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse_json::<Input>(br#"{"resources": {"memory": "1Gi"}}"#).is_ok());

        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct List {
            items: Vec<Resources>,
        }
        let err = parse_json::<List>(br#"{"items": [{}, {"cpu": "1", "tpu": 1}]}"#)
            .expect_err("a nested field in a list");
        assert!(matches!(err, ApiError::Field(e) if e.field == "items[1].tpu"));
    }

    #[test]
    fn nothing_may_follow_the_value() {
        for trailing in [
            &br#"{"resources": {}} {"resources": {}}"#[..],
            br#"{"resources": {}}x"#,
        ] {
            let err = parse_json::<Input>(trailing).expect_err("trailing bytes");
            assert!(err.to_string().contains("exactly one JSON value"), "{err}");
        }
        assert!(
            parse_json::<Input>(b"{\"resources\": {}}\n").is_ok(),
            "whitespace is fine"
        );
    }

    #[test]
    fn syntax_errors_say_so() {
        let err = parse_json::<Input>(b"{nope").expect_err("not json");
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}
