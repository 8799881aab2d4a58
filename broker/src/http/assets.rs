//! The dashboard's static files, embedded into the binary at build time by `build.rs` from the
//! repository's `dashboard/` folder, so the broker serves its page with nothing else installed.

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// The content type and bytes of an embedded file, by its path under `dashboard/`.
pub fn find(name: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(path, _, _)| *path == name)
        .map(|(_, mime, body)| (*mime, *body))
}
