//! The status page's files, compiled into the binary (`include_str!`): one
//! HTML document, a few ES modules (`app.js` imports the rest), one
//! stylesheet, written by hand with no build step. The Content-Security-Policy allows nothing but this origin, so the
//! page can load no script, font or style from anywhere else (and an
//! injected one would not run).

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const WIRE_JS: &str = include_str!("ui/wire.js");
const FILTERS_JS: &str = include_str!("ui/filters.js");
const VIEW_JS: &str = include_str!("ui/view.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// `GET /`.
pub(super) async fn index() -> Response {
    file(StatusCode::OK, "text/html; charset=utf-8", INDEX)
}

/// `/` for a reader without a token the authorisation file accepts: 401,
/// with the page itself as the body (it holds no data), which asks for a
/// token and sends it with every request of its own.
pub(super) fn unauthorized() -> Response {
    let mut response = file(StatusCode::UNAUTHORIZED, "text/html; charset=utf-8", INDEX);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"heartbeat\""),
    );
    response
}

/// `GET /assets/{name}`.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => script(APP_JS),
        "wire.js" => script(WIRE_JS),
        "filters.js" => script(FILTERS_JS),
        "view.js" => script(VIEW_JS),
        "style.css" => file(StatusCode::OK, "text/css; charset=utf-8", STYLE_CSS),
        _ => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

fn script(body: &'static str) -> Response {
    file(StatusCode::OK, "text/javascript; charset=utf-8", body)
}

fn file(status: StatusCode, content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // Small files: revalidate each time, so an upgrade shows at once.
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (status, headers, body).into_response()
}
