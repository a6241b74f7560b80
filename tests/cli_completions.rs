//! Shell completions and the man page come from clap's own generators; these tests load the
//! completion script into a real bash and check the page's sections, so a broken generator
//! or a missing command shows.

use crate::common;
use common::*;

#[test]
fn every_shell_gets_a_completion_script_naming_the_commands() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let r = keyferry(&["completions", shell], None);
        r.assert_code(0);
        let s = r.stdout();
        for word in ["keyferry", "export", "import", "audit", "restore"] {
            assert!(s.contains(word), "{shell}: no {word}");
        }
    }
    keyferry(&["completions", "tcsh"], None).assert_code(2);
}

/// The bash script is loaded into a real bash, which then knows how to complete keyferry.
#[cfg(unix)]
#[test]
fn bash_loads_the_completion_script() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("keyferry.bash");
    std::fs::write(&script, keyferry(&["completions", "bash"], None).out.stdout).unwrap();
    let o = std::process::Command::new("bash")
        .args([
            "--norc",
            "-c",
            &format!("source {}; complete -p keyferry", script.display()),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("keyferry"));
}

#[test]
fn the_man_page_has_its_sections_and_commands() {
    let r = keyferry(&["man"], None);
    r.assert_code(0);
    let page = r.stdout();
    assert!(page.contains(".TH keyferry 1"), "{page}");
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH OPTIONS",
        ".SH SUBCOMMANDS",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    for cmd in ["keyferry\\-keys", "keyferry\\-audit", "keyferry\\-diagnose"] {
        assert!(page.contains(cmd), "no {cmd}");
    }
    let help = keyferry(&["--help"], None).stdout();
    assert!(
        help.contains("keyferry help <command>") && help.contains("keyferry man"),
        "{help}"
    );
    assert!(!help.contains("source tree"), "{help}");
}
