//! The web page: plain HTML, CSS and JavaScript files compiled into the binary
//! (`src/web/static/`), served at `GET /` and `GET /assets/{file}`. No Node is needed to
//! build or run it, and it works under SPEC's Content-Security-Policy as it stands: no
//! inline scripts, styles or handlers; scripts only from here and platform.twitter.com.
//!
//! Caching: the page links every asset with `?v=<content hash>`, so a versioned asset is
//! cached for a year and a new build changes the link. The page itself and unversioned
//! asset requests revalidate with an `ETag`.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{middleware::Compress, web, HttpRequest, HttpResponse};

use crate::error::AppError;

/// A file compiled into the binary.
pub struct Asset {
    /// Path under `/assets/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// The page, before `__VERSION__` is replaced by [`version`].
const INDEX_TEMPLATE: &str = include_str!("static/index.html");

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// An [`Asset`] compiled in from `src/web/static/<path>`.
macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("static/", $path)),
        }
    };
}

/// The page's scripts, in load order, joined at compile time into one `app.js`: one
/// request instead of five. Each file is an IIFE, so joining changes no scope.
const APP_JS_SOURCE: &str = concat!(
    include_str!("static/js/api.js"),
    "\n",
    include_str!("static/js/feed.js"),
    "\n",
    include_str!("static/js/status.js"),
    "\n",
    include_str!("static/js/admin.js"),
    "\n",
    include_str!("static/js/main.js"),
);

/// `app.js` as served: the sources without their indentation and whole-line `//`
/// comments, which are for readers of `src/web/static/js/` (a fifth of the bytes), not
/// for visitors. Nothing else changes, so the served lines are the source lines. This is
/// safe because no script has a template literal or a string continued over lines (a
/// unit test checks), the only places where a line's start could be content.
fn app_js() -> &'static str {
    static JS_BODY: OnceLock<String> = OnceLock::new();
    JS_BODY.get_or_init(|| {
        APP_JS_SOURCE
            .lines()
            .map(str::trim_start)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .fold(String::with_capacity(APP_JS_SOURCE.len()), |mut out, l| {
                out.push_str(l);
                out.push('\n');
                out
            })
    })
}

/// Every file served under `/assets/`.
pub fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<[Asset; 3]> = OnceLock::new();
    ASSETS.get_or_init(|| {
        [
            asset!("app.css", CSS),
            Asset {
                path: "app.js",
                content_type: JS,
                body: app_js().as_bytes(),
            },
            asset!("favicon.svg", SVG),
        ]
    })
}

/// Cache lifetime of a versioned asset: a year, as the link changes with the content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The page and unversioned assets: always revalidate (cheap, thanks to the ETag).
const REVALIDATE: &str = "no-cache";

/// FNV-1a, 64 bits: a stable content hash without a dependency (not for security).
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The version of the page and its assets: a hash over all their bytes.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let hash = assets().iter().fold(
            fnv1a(0xcbf2_9ce4_8422_2325, INDEX_TEMPLATE.as_bytes()),
            |h, a| fnv1a(fnv1a(h, a.path.as_bytes()), a.body),
        );
        format!("{hash:016x}")
    })
}

/// The page with its asset links versioned.
pub fn index_html() -> &'static str {
    static INDEX: OnceLock<String> = OnceLock::new();
    INDEX.get_or_init(|| INDEX_TEMPLATE.replace("__VERSION__", version()))
}

/// The bytes a visitor downloads for the page without the X widget: HTML, CSS and JS.
pub fn page_weight() -> usize {
    index_html().len()
        + assets()
            .iter()
            .filter(|a| a.path.ends_with(".css") || a.path.ends_with(".js"))
            .map(|a| a.body.len())
            .sum::<usize>()
}

/// Finds an asset by its path under `/assets/`.
pub fn asset(path: &str) -> Option<&'static Asset> {
    assets().iter().find(|a| a.path == path)
}

/// Registers `GET /` and `GET /assets/{path}`, compressed when the client accepts gzip.
/// (`GET /api/openapi.json` is `http::openapi`'s: the document lives beside the handlers
/// it describes, and this module names nothing of `http`.)
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .wrap(Compress::default())
            .route(web::get().to(index)),
    )
    .service(
        web::resource("/assets/{path:.+}")
            .wrap(Compress::default())
            .route(web::get().to(static_asset)),
    );
}

/// True when the request's `If-None-Match` names `etag`.
fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn respond(
    req: &HttpRequest,
    content_type: &'static str,
    cache: &'static str,
    etag: String,
    body: &'static [u8],
) -> HttpResponse {
    let fresh = not_modified(req, &etag);
    let mut builder = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    builder
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static(cache)))
        .insert_header((header::ETAG, etag));
    if fresh {
        return builder.finish();
    }
    builder
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .body(body)
}

/// `GET /`: the page.
#[utoipa::path(get, path = "/", operation_id = "getPage", tag = "page",
    responses((status = 200, description = "The web page", content_type = "text/html"),
        (status = 304, description = "Not modified (`If-None-Match`)")))]
pub async fn index(req: HttpRequest) -> HttpResponse {
    respond(
        &req,
        "text/html; charset=utf-8",
        REVALIDATE,
        format!("\"{}\"", version()),
        index_html().as_bytes(),
    )
}

/// `GET /assets/{path}`: one embedded file; a JSON 404 for anything else.
#[utoipa::path(get, path = "/assets/{path}", operation_id = "getAsset", tag = "page",
    params(("path" = String, Path, description = "File under /assets/, e.g. `app.css`"),
        ("v" = Option<String>, Query, description = "Content version; the current one makes the answer cacheable for a year")),
    responses((status = 200, description = "The file, with its content type"),
        (status = 304, description = "Not modified (`If-None-Match`)"),
        (status = 404, description = "No such asset", body = crate::error::ErrorBody)))]
pub async fn static_asset(
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let asset = asset(&path).ok_or_else(|| AppError::NotFound(format!("asset {:?}", &*path)))?;
    let versioned = web::Query::<VersionQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().v)
        .is_some_and(|v| v == version());
    let cache = if versioned { IMMUTABLE } else { REVALIDATE };
    let etag = format!("\"{:016x}\"", fnv1a(0xcbf2_9ce4_8422_2325, asset.body));
    Ok(respond(&req, asset.content_type, cache, etag, asset.body))
}

/// The `?v=` of an asset link.
#[derive(serde::Deserialize)]
struct VersionQuery {
    v: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_links_is_embedded_with_the_current_version() {
        let html = index_html();
        let mut linked = 0;
        for part in html.split("/assets/").skip(1) {
            let link = part.split('"').next().unwrap();
            let (path, query) = link.split_once('?').expect("versioned link");
            assert!(asset(path).is_some(), "{path} is linked but not embedded");
            assert_eq!(query, format!("v={}", version()));
            linked += 1;
        }
        assert_eq!(
            linked,
            assets().len(),
            "every embedded asset is linked once"
        );
        assert!(!html.contains("__VERSION__"));
    }

    #[test]
    fn page_has_no_inline_script_style_or_handler() {
        let html = index_html().to_ascii_lowercase();
        assert!(!html.contains("<style"), "inline <style> breaks the CSP");
        assert!(!html.contains(" style="), "style attributes break the CSP");
        assert!(
            !html.contains(" onclick") && !html.contains(" onload") && !html.contains(" onerror")
        );
        for script in html.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap();
            assert!(
                tag.contains(" src=\"/assets/"),
                "inline script: <script{tag}>"
            );
        }
    }

    #[test]
    fn page_head_offers_the_combined_feeds_for_auto_discovery() {
        let html = index_html();
        let head = html.split("</head>").next().unwrap();
        for (kind, path) in [
            ("application/rss+xml", "/feeds/all.rss"),
            ("application/atom+xml", "/feeds/all.atom"),
            ("application/feed+json", "/feeds/all.json"),
        ] {
            let tag = format!("<link rel=\"alternate\" type=\"{kind}\"");
            let link = head
                .split(tag.as_str())
                .nth(1)
                .unwrap_or_else(|| panic!("no alternate link of type {kind}"));
            let link = link.split('>').next().unwrap();
            assert!(link.contains(&format!("href=\"{path}\"")), "{link}");
            assert!(link.contains(" title=\""), "{link}");
        }
        assert!(
            html.contains("id=\"feed-links\""),
            "the per-leader feed list"
        );
    }

    #[test]
    fn page_weight_stays_under_sixty_kilobytes() {
        assert!(
            page_weight() <= 60 * 1024,
            "page weight {} bytes",
            page_weight()
        );
    }

    #[test]
    fn served_script_drops_only_indentation_and_comment_lines() {
        // What makes dropping a line's start safe: no line of a script continues a
        // template literal or a string.
        assert!(!APP_JS_SOURCE.contains('`'), "template literal in a script");
        assert!(
            !APP_JS_SOURCE.lines().any(|l| l.ends_with('\\')),
            "line continuation"
        );
        let kept: Vec<&str> = APP_JS_SOURCE
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .collect();
        let served: Vec<&str> = app_js().lines().map(str::trim_end).collect();
        assert_eq!(served, kept);
        assert!(app_js().contains("'https://platform.twitter.com/widgets.js'"));
        assert!(app_js().len() < APP_JS_SOURCE.len() * 9 / 10);
    }

    #[test]
    fn version_is_a_stable_hex_hash() {
        assert_eq!(version().len(), 16);
        assert!(version().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(version(), version());
    }
}
