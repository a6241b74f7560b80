//! The README's Layout table names every file of the library (`src/`, the binary aside): a
//! file added without a row, or a row whose file is gone, fails here.

use std::collections::BTreeSet;
use std::path::Path;

/// The files the Layout section names: `dir/{a,b}.rs` is `dir/a.rs` and `dir/b.rs`; `dir/`
/// is everything under it.
fn listed(readme: &str) -> (BTreeSet<String>, Vec<String>) {
    let start = readme
        .find("## Layout")
        .expect("the README has a Layout section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let (mut files, mut dirs) = (BTreeSet::new(), Vec::new());
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split(" | ").next().unwrap_or("");
        for tok in first.split('`').skip(1).step_by(2) {
            match (tok.find('{'), tok.find('}')) {
                (Some(a), Some(b)) => {
                    for part in tok[a + 1..b].split(',') {
                        files.insert(format!("{}{part}{}", &tok[..a], &tok[b + 1..]));
                    }
                }
                _ if tok.ends_with('/') => dirs.push(tok.to_owned()),
                _ => {
                    files.insert(tok.to_owned());
                }
            }
        }
    }
    (files, dirs)
}

fn library_files(dir: &Path, root: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel == "bin" {
            continue;
        }
        if p.is_dir() {
            library_files(&p, root, out);
        } else {
            out.push(rel);
        }
    }
}

#[test]
fn the_readmes_layout_names_every_library_file_and_no_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let (files, dirs) = listed(&readme);
    let mut actual = Vec::new();
    library_files(&root.join("src"), &root.join("src"), &mut actual);
    actual.sort();
    // A folder's `mod.rs` is named by its folder's row.
    let named = |f: &str| {
        files.contains(f)
            || dirs.iter().any(|d| f.starts_with(d.as_str()))
            || f.strip_suffix("mod.rs")
                .is_some_and(|d| !d.is_empty() && files.iter().any(|l| l.starts_with(d)))
    };
    let unnamed: Vec<&String> = actual.iter().filter(|f| !named(f)).collect();
    assert!(
        unnamed.is_empty(),
        "files without a Layout row: {unnamed:?}"
    );
    let gone: Vec<&String> = files
        .iter()
        .filter(|f| !root.join("src").join(f).exists())
        .collect();
    assert!(gone.is_empty(), "Layout rows whose file is gone: {gone:?}");
    assert!(actual.len() > 80, "{actual:?}");
}
