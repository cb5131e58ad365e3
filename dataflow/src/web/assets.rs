//! The dashboard's files, embedded in the binary: it needs no internet and no files
//! beside it. The chart library is uPlot (MIT, <https://github.com/leeoniya/uPlot>),
//! vendored from npm with its license in `dataflow/assets/vendor/uplot/`.

/// One embedded file.
pub struct Asset {
    /// The URL path it is served at.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// Every embedded file.
pub const ASSETS: &[Asset] = &[
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_bytes!("../../assets/index.html") },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/app.js"),
    },
    Asset { path: "/app.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../../assets/app.css") },
    Asset {
        path: "/vendor/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        path: "/vendor/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/vendor/uplot/uPlot.min.css"),
    },
    Asset {
        path: "/vendor/uPlot.LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../assets/vendor/uplot/LICENSE"),
    },
];

/// The file served at `path` (`/index.html` is `/`).
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_files() {
        let page = std::str::from_utf8(find("/").unwrap().body).unwrap();
        for reference in page.split(['"', '\'']).filter(|s| s.starts_with('/') || s.contains("://")) {
            assert!(find(reference).is_some(), "index.html refers to {reference}, which is not embedded");
        }
        assert!(find("/index.html").is_some());
        assert!(find("/nope").is_none());
    }
}
