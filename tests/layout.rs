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

/// The layers the README's Layout section gives, lowest first: (layer, its modules).
fn layers(readme: &str) -> Vec<(String, Vec<String>)> {
    let start = readme
        .find("| layer | modules |")
        .expect("the README's Layout section has a layer table");
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            let modules = cells[1]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            (cells[0].to_owned(), modules)
        })
        .collect()
}

/// The library modules `text` names as `crate::module` (a path, a `use crate::{a, b}` group),
/// its comments and its `#[cfg(test)] mod tests` aside.
fn used_modules(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |i| &text[..i]);
    let mut out = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or(""))
                    .collect(),
                None => vec![rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")],
            };
            out.extend(
                names
                    .into_iter()
                    .filter(|n| modules.contains(*n))
                    .map(str::to_owned),
            );
        }
    }
    out
}

#[test]
fn every_module_uses_only_its_own_layer_and_those_below_and_no_module_loops() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let layers = layers(&readme);
    assert!(layers.len() >= 5, "{layers:?}");
    let layer_of = |m: &str| layers.iter().position(|(_, ms)| ms.iter().any(|x| x == m));
    let mut files = Vec::new();
    library_files(&root.join("src"), &root.join("src"), &mut files);
    // The top-level modules: `src/x.rs` and `src/x/`, `lib.rs` aside.
    let modules: BTreeSet<String> = files
        .iter()
        .filter(|f| f.as_str() != "lib.rs" && f.ends_with(".rs"))
        .map(|f| f.split(['/', '.']).next().unwrap().to_owned())
        .collect();
    let unplaced: Vec<&String> = modules.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "modules in no layer of the README's table: {unplaced:?}"
    );
    let mut graph: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    let mut wrong = Vec::new();
    for f in files
        .iter()
        .filter(|f| f.ends_with(".rs") && f.as_str() != "lib.rs")
    {
        let module = f.split(['/', '.']).next().unwrap();
        let text = std::fs::read_to_string(root.join("src").join(f)).unwrap();
        for used in used_modules(&text, &modules) {
            if used == module {
                continue;
            }
            let (from, to) = (layer_of(module).unwrap(), layer_of(&used).unwrap());
            if to > from {
                wrong.push(format!(
                    "src/{f} ({}) uses {used} ({})",
                    layers[from].0, layers[to].0
                ));
            }
            graph.entry(module.to_owned()).or_default().insert(used);
        }
    }
    assert!(
        wrong.is_empty(),
        "uses of a higher layer:\n{}",
        wrong.join("\n")
    );
    // No loops: repeatedly remove modules that use nothing left; what stays is in a loop.
    let mut left: BTreeSet<String> = modules.clone();
    loop {
        let free: Vec<String> = left
            .iter()
            .filter(|m| {
                graph
                    .get(*m)
                    .is_none_or(|u| u.iter().all(|x| !left.contains(x)))
            })
            .cloned()
            .collect();
        if free.is_empty() {
            break;
        }
        for m in free {
            left.remove(&m);
        }
    }
    let loops: Vec<String> = left
        .iter()
        .map(|m| {
            format!(
                "{m} uses {:?}",
                graph[m].intersection(&left).collect::<Vec<_>>()
            )
        })
        .collect();
    assert!(
        loops.is_empty(),
        "modules that use each other:\n{}",
        loops.join("\n")
    );
    // The test can fail: a made-up loop is found.
    assert!(used_modules(
        "use crate::{fs, keys::x};\nlet a = crate::txn::look();",
        &modules
    )
    .is_superset(&["fs", "keys", "txn"].map(String::from).into()));
}

/// `pub mod` lines of a module file, without comments or test modules.
fn public_submodules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';').trim().to_owned())
        .collect()
}

/// Each wing (a module with files of its own) keeps them private and re-exports what other
/// code may use, so the library's surface is chosen in one place per wing (as rage's
/// `age/src/lib.rs` does). The two public namespaces are the `pg_hba.conf` model and the
/// replica verbs, which the README names.
#[test]
fn wings_keep_their_files_private_and_choose_what_they_export() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    library_files(&root, &root, &mut files);
    let allowed: BTreeSet<String> = ["ha/mod.rs: hba", "ha/mod.rs: replica"]
        .map(String::from)
        .into();
    let mut found = BTreeSet::new();
    for f in files.iter().filter(|f| f.ends_with("/mod.rs")) {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        for m in public_submodules(&text) {
            found.insert(format!("{f}: {m}"));
        }
    }
    let extra: Vec<_> = found.difference(&allowed).collect();
    assert!(
        extra.is_empty(),
        "a wing's file is public; make it `pub(crate) mod` and re-export what is used: {extra:?}"
    );
    // The test can fail: a public file is seen.
    assert_eq!(
        public_submodules("pub(crate) mod a;\npub mod b;\nmod c;"),
        ["b"]
    );
}

/// The command-line options that say where a command acts, each with the field name every
/// command gives it: `--cluster`, `--node` and `--state-dir` are declared once, in
/// `node_args.rs`, and flattened into the commands. `sync` keeps its own `--cluster`, which
/// reads `KEYFERRY_CLUSTER` only when no folders are given (an exported variable must not turn a
/// two-folder sync into an error).
fn place_fields(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut attrs = String::new();
    for l in text.lines().map(str::trim) {
        if l.starts_with("#[") {
            attrs.push_str(l);
            continue;
        }
        let declared = attrs.contains("#[arg(");
        attrs.clear();
        if !declared {
            continue;
        }
        for name in ["cluster", "node", "state_dir"] {
            if l.starts_with(&format!("pub {name}:")) {
                out.push(name.to_owned());
            }
        }
    }
    out
}

#[test]
fn where_a_command_acts_is_declared_once() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/keyferry");
    let mut files = Vec::new();
    library_files(&root, &root, &mut files);
    let mut found = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        for name in place_fields(&text) {
            found.insert(format!("{f}: {name}"));
        }
    }
    let allowed: BTreeSet<String> = ["cmd/sync/mod.rs: cluster"].map(String::from).into();
    let extra: Vec<_> = found.difference(&allowed).collect();
    assert!(
        extra.is_empty(),
        "declare --cluster, --node and --state-dir once in node_args.rs and flatten them: \
         {extra:?}"
    );
    // The test can fail: an option declared in a command is seen, a flattened one is not.
    assert_eq!(
        place_fields(
            "    #[arg(long, value_name = \"NAME\")]\n    pub node: Option<String>,\n\
             #[command(flatten)]\n    pub cluster: ClusterArg,"
        ),
        ["node"]
    );
}

/// Lines of `text` outside its test module that hold, inside a string, a run of ten spaces or
/// more between words: a message continued on the next line without its `\`, which keeps the
/// next line's indentation in the words an admin reads (six messages had one).
fn spaced_messages(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    code.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && l.contains('"') && !l.contains("\\n"))
        .filter(|l| {
            let b = l.as_bytes();
            (0..b.len()).any(|i| {
                i > 0
                    && (b[i - 1].is_ascii_alphanumeric() || b",;:)".contains(&b[i - 1]))
                    && b[i..].iter().take_while(|&&c| c == b' ').count() >= 10
                    && b.get(i + b[i..].iter().take_while(|&&c| c == b' ').count())
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'(')
            })
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn no_message_keeps_the_indentation_of_a_lost_line_break() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    library_files(&root, &root, &mut files);
    let bin = root.join("bin");
    let mut bin_files = Vec::new();
    library_files(&bin, &bin, &mut bin_files);
    let mut found = Vec::new();
    for (dir, f) in files
        .iter()
        .map(|f| (&root, f))
        .chain(bin_files.iter().map(|f| (&bin, f)))
    {
        for l in spaced_messages(&std::fs::read_to_string(dir.join(f)).unwrap()) {
            found.push(format!("{f}: {l}"));
        }
    }
    assert!(
        found.is_empty(),
        "continue the string with a `\\`: {found:#?}"
    );
    // The test can fail: such a line is seen, a continued one is not.
    assert_eq!(
        spaced_messages(
            "    \"run keyferry           sync again\",\n    \"run keyferry \\\n     sync\""
        ),
        ["\"run keyferry           sync again\","]
    );
}
