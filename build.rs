//! Embeds the dashboard's static files (`dashboard/`) into the binary, which serves them from
//! the broker's HTTP listener.

use std::{env, fs, path::Path};

fn mime(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, String)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().to_string();
        // Tests, tooling and hidden files are not part of the page.
        if name.starts_with('.') || name == "test" || name == "node_modules" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            collect(&path, &format!("{prefix}{name}/"), out);
        } else {
            out.push((format!("{prefix}{name}"), path.display().to_string()));
        }
    }
}

fn main() {
    let manifest = env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dashboard = Path::new(&manifest).join("dashboard");
    println!("cargo:rerun-if-changed={}", dashboard.display());
    let mut files = Vec::new();
    collect(&dashboard, "", &mut files);
    let mut code = String::from(
        "/// Embedded files: (path, content type, bytes).\npub static ASSETS: &[(&str, &str, &[u8])] = &[\n",
    );
    for (name, path) in &files {
        println!("cargo:rerun-if-changed={path}");
        code.push_str(&format!(
            "    ({name:?}, {:?}, include_bytes!({path:?})),\n",
            mime(name)
        ));
    }
    code.push_str("];\n");
    let out =
        Path::new(&env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("dashboard_assets.rs");
    if let Err(e) = fs::write(&out, code) {
        panic!("cannot write {}: {e}", out.display());
    }
}
