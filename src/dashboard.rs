//! The dispatch dashboard's static files, embedded into the binary at build time by `build.rs`
//! from the repository's `dashboard/` folder, so the broker serves its page with nothing else
//! installed.

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// The embedded dashboard, as the broker's HTTP listener asks for its files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dashboard;

impl broker::StaticFiles for Dashboard {
    fn get(&self, path: &str) -> Option<(&'static str, &'static [u8])> {
        ASSETS
            .iter()
            .find(|(name, _, _)| *name == path)
            .map(|(_, mime, body)| (*mime, *body))
    }
}

#[cfg(test)]
mod tests {
    use broker::StaticFiles;

    use super::*;

    #[test]
    fn the_page_and_its_scripts_are_embedded_with_their_types() {
        let (mime, body) = Dashboard.get("index.html").expect("index.html embedded");
        assert!(mime.starts_with("text/html"));
        assert!(!body.is_empty());
        let (mime, _) = Dashboard.get("mqtt.js").expect("mqtt.js embedded");
        assert!(mime.starts_with("text/javascript"));
        assert!(
            Dashboard.get("test/page.html").is_none(),
            "tests are not served"
        );
        assert!(Dashboard.get("nothing-here.js").is_none());
    }
}
