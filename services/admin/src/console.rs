//! The web console: a page and its script, shipped inside the admin binary (no build step: plain modern
//! JavaScript), served at `/console`. Every `/console/...` URL answers the page, which routes itself, so
//! links to an execution can be shared and reloaded.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const STYLE_CSS: &str = include_str!("../console/style.css");

pub fn router() -> axum::Router {
    axum::Router::new()
        .route("/console", axum::routing::get(page))
        .route("/console/", axum::routing::get(page))
        .route("/console/*path", axum::routing::get(asset))
}

async fn page() -> axum::response::Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

async fn asset(axum::extract::Path(path): axum::extract::Path<String>) -> axum::response::Response {
    match path.as_str() {
        "assets/app.js" => {
            ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS).into_response()
        }
        "assets/style.css" => {
            ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE_CSS).into_response()
        }
        _ => page().await,
    }
}
