//! `keyferry host check-site`, "confirm each node works", against a real HTTPS server on
//! loopback (`openssl s_server -HTTP` with a certificate from a CA made here) serving each of
//! the pages a Secret Server node shows: its login page, "Version does not match" and
//! "Encryption key doesn't match".

#![cfg(unix)]

use crate::common;

use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A CA and a certificate for 127.0.0.1 signed by it, in `dir`.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=keyferry test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "site.key",
        "-out",
        "site.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "site.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "site.pem",
    ]);
}

/// `openssl s_server -HTTP` serving `dir`'s files over TLS on `port`, each file a whole HTTP
/// response (status line, headers, page).
struct Server(Child);

impl Server {
    fn start(dir: &Path, port: u16) -> Server {
        let mut child = Command::new("openssl")
            .args(["s_server", "-quiet", "-HTTP", "-accept"])
            .arg(port.to_string())
            .args(["-cert", "site.pem", "-key", "site.key"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Server(child);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("openssl s_server did not listen");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn each_nodes_site_is_asked_and_the_products_error_pages_are_named_with_their_advice() {
    let c = Cluster::secret_server(b"KEY", None);
    let dir = c.path("site");
    std::fs::create_dir(&dir).unwrap();
    certificates(&dir);
    let page = |name: &str, status: &str, body: &str| {
        std::fs::write(
            dir.join(name),
            format!("HTTP/1.0 {status}\r\nContent-Type: text/html\r\n\r\n{body}"),
        )
        .unwrap();
    };
    page(
        "login.html",
        "200 OK",
        "<html><title>Secret Server</title><body>Login</body></html>",
    );
    // The product's error pages come with a success status: only their words tell.
    page(
        "version.html",
        "200 OK",
        "<html><body><h1>Version Does Not Match</h1><p>The application version 11.7 does not \
         match the database version 11.6.</p></body></html>",
    );
    page(
        "key.html",
        "200 OK",
        "<html><body><h2>Encryption key doesn't match</h2></body></html>",
    );
    // IIS with the node's application pool stopped.
    page(
        "stopped.html",
        "503 Service Unavailable",
        "<html><body><h2>Service Unavailable</h2></body></html>",
    );
    let port = free_port();
    let _server = Server::start(&dir, port);
    let url = |page: &str| format!("https://127.0.0.1:{port}/{page}");
    let mut text = std::fs::read_to_string(c.cluster_file()).unwrap();
    for (node, page) in [
        ("web1", "login.html"),
        ("web2", "version.html"),
        ("dr1", "key.html"),
        ("proxy1", "stopped.html"),
    ] {
        text = text.replace(
            &format!("name = \"{node}\"\n"),
            &format!(
                "name = \"{node}\"\nsite_url = \"{}\"\nsite_ca = \"site/ca.pem\"\n",
                url(page)
            ),
        );
    }
    std::fs::write(c.cluster_file(), &text).unwrap();
    let cl = c.cluster_file();
    let cl = cl.to_str().unwrap();

    let r = keyferry(&["host", "check-site", "-c", cl, "--json"], None);
    r.assert_code(1);
    let doc = r.json();
    let row = |n: &str| {
        doc["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["node"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(row("web1")["works"], true, "{doc}");
    assert_eq!(row("web1")["status"], 200);
    let w2 = row("web2");
    assert_eq!(w2["works"], false);
    assert!(
        w2["why"]
            .as_str()
            .unwrap()
            .contains("\"Version Does Not Match\""),
        "{w2}"
    );
    assert_eq!(w2["diagnose"], "version-mismatch");
    assert!(
        w2["fix"].as_str().unwrap().contains("application folder"),
        "{w2}"
    );
    let d = row("dr1");
    assert_eq!(d["diagnose"], "encryption-key-mismatch", "{d}");
    assert!(d["why"]
        .as_str()
        .unwrap()
        .contains("Encryption key doesn't match"));
    let p = row("proxy1");
    assert_eq!(p["works"], false);
    assert_eq!(p["status"], 503, "{p}");
    assert!(p["why"].as_str().unwrap().contains("HTTP 503"), "{p}");

    // One node: exit 0 when it works.
    keyferry(&["host", "check-site", "-c", cl, "--to", "web1"], None).assert_code(0);
    // The text form names the page's words and the advice.
    let r = keyferry(&["host", "check-site", "-c", cl, "--to", "web2"], None);
    r.assert_code(1);
    assert!(r.stdout().contains("does NOT work"), "{}", r.stdout());
    assert!(r.stdout().contains("version-mismatch"), "{}", r.stdout());

    // A certificate nobody vouched for is no answer, not a working site.
    std::fs::write(
        c.cluster_file(),
        text.replace("site_ca = \"site/ca.pem\"\n", ""),
    )
    .unwrap();
    let r = keyferry(
        &["host", "check-site", "-c", cl, "--to", "web1", "--json"],
        None,
    );
    r.assert_code(1);
    let w1 = &r.json()["sites"][0];
    assert_eq!(w1["works"], false);
    assert!(w1["status"].is_null(), "{w1}");
    assert!(w1["why"].as_str().unwrap().starts_with("no answer"), "{w1}");

    // A node without a site_url, asked for by name: refused with what to write.
    let r = keyferry(
        &["host", "check-site", "-c", cl, "--to", "web9", "--json"],
        None,
    );
    r.assert_code(2);
}
