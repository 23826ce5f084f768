//! README's source layout names every file under `src/`, and only files
//! that exist: a newcomer reads the tree through it.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn readme_names_every_source_file_and_no_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let start = readme
        .find("Source layout")
        .expect("a source layout section");
    let end = readme[start..]
        .find("\n\nBenchmark")
        .map_or(readme.len(), |e| start + e);
    let layout = &readme[start..end];
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let mut named = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(root).expect("under the root");
        let rel = rel.to_str().expect("UTF-8 path");
        assert!(
            layout.contains(&format!("`{rel}`")),
            "README's source layout does not name {rel}"
        );
        named.push(rel.to_string());
    }
    for word in layout.split('`').skip(1).step_by(2) {
        if word.starts_with("src/") && word.ends_with(".rs") {
            assert!(
                named.iter().any(|n| n == word),
                "README's source layout names {word}, which does not exist"
            );
        }
    }
}
