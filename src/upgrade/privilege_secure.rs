//! The Privilege Secure upgrades: the HA pair (keyferry's order, one writable database at a
//! time) and the remote Action, Scheduler and Proxy hosts.

use super::*;

pub(super) fn privilege_secure_ha(b: &mut Builder<'_>, file: &ClusterFile) -> Result<()> {
    let pair = crate::ha::config::Pair::from_cluster(file)?;
    let (p, s) = (pair.nodes[0].name.as_str(), pair.nodes[1].name.as_str());
    let keys_kept = keys_kept(b, file)?;
    let vendor = file.upgrade.ha_order == crate::cluster::file::HaOrder::Vendor;
    b.notes.push(if vendor {
        "the HA pair in the vendor's order: both servers upgraded (the secondary, then the \
         primary while its database is fenced), then the keys, then HA re-established; the \
         primary's database comes back as a replica of the upgraded one (never a second \
         primary)"
            .into()
    } else {
        "the HA pair in keyferry's order: the secondary upgraded, the old primary made its \
         replica and failed back to, then the primary upgraded as the one writable database \
         (docs/upgrade.md says why; [upgrade] ha_order = \"vendor\" gives the vendor's)"
            .into()
    });
    b.auto(
        "ha.failover",
        p,
        "Fail over to the secondary (the old primary is stopped and fenced)",
        &["ha", "failover"],
    );
    b.done_when(&[(s, "running-primary"), (p, "!running-primary")]);
    b.gate(
        "ha status: healthy (one primary, its replica streaming)",
        Some("ha status"),
    );
    b.manual(
        "ha.upgrade-secondary",
        s,
        "Upgrade the secondary",
        nps_setup(s),
    );
    reboot(b, file, "ha.reboot-secondary", s);
    let rejoin_and_fail_back = |b: &mut Builder<'_>| {
        b.auto(
            "ha.rejoin-primary",
            p,
            "Make the old primary a replica of the upgraded database",
            &["ha", "rejoin"],
        );
        b.done_when(&[(s, "running-primary"), (p, "running-replica")]);
        b.auto(
            "ha.failover-back",
            s,
            "Fail back: the original primary's server is the primary again",
            &["ha", "failover"],
        );
        b.done_when(&[(p, "running-primary"), (s, "!running-primary")]);
        b.gate("ha status: healthy", Some("ha status"));
    };
    if vendor {
        b.manual(
            "ha.upgrade-primary",
            p,
            "Upgrade the primary",
            format!(
                "{} (its own database stays stopped and fenced: the upgraded one on {s} is \
                 the only writable database; the HA tool says HA is not configured, which the \
                 steps below mend)",
                nps_setup(p)
            ),
        );
        reboot(b, file, "ha.reboot-primary", p);
    } else {
        empty_archive(b, &pair);
        rejoin_and_fail_back(b);
        b.manual("ha.upgrade-primary", p, "Upgrade the primary", nps_setup(p));
        reboot(b, file, "ha.reboot-primary", p);
    }
    if keys_kept {
        b.push_keys(
            "ha.push-keys",
            p,
            "Copy appsettings.json to the secondary (the keys stay as the installer kept them)",
            &["keys", "push", "--to", s],
        );
    } else {
        b.manual(
            "ha.export-keys",
            p,
            "Export the encryption keys with the vendor tool",
            export_keys(p),
        );
        b.push_keys(
            "ha.push-keys",
            p,
            "Copy appsettings.json and the encryption keys to the secondary (keys.exp placed)",
            &["keys", "push", "--to", s],
        );
        b.manual(
            "ha.import-keys",
            s,
            "Import the keys with the vendor tool",
            format!(
                "on {s}, in the KeyTools folder: SbPAM.RotateKey.exe import -n keys.exp (it \
                 asks for the export password)"
            ),
        );
        for n in [s, p] {
            b.auto(
                "ha.cleanup",
                n,
                "Delete keys.exp (and anything else a transfer left)",
                &["keys", "cleanup"],
            );
        }
    }
    if vendor {
        // The vendor's "Re-establish HA": keyferry's database moves, one writable at a time.
        empty_archive(b, &pair);
        rejoin_and_fail_back(b);
    }
    b.auto(
        "ha.rejoin-secondary",
        s,
        "Re-establish HA on the secondary",
        &["ha", "rejoin"],
    );
    b.done_when(&[(p, "running-primary"), (s, "running-replica")]);
    b.gate("the keys match (keyferry audit)", Some("audit"));
    b.auto("ha.verify", p, "Verify the pair", &["ha", "status"]);
    b.auto(
        "ha.audit",
        p,
        "Verify: both servers hold the same keys and appsettings.json",
        &["audit"],
    );
    for n in [s, p] {
        b.manual(
            "ha.register",
            n,
            "Register the services",
            format!(
                "on {n}'s web UI: Configuration > System Settings > Services, check the URL, \
                 click Register Services; under Service Nodes both servers are online"
            ),
        );
    }
    Ok(())
}

pub(super) fn remote_services(
    b: &mut Builder<'_>,
    file: &ClusterFile,
    standalone: bool,
) -> Result<()> {
    let p = primary(file)?;
    let keys_kept = keys_kept(b, file)?;
    if standalone {
        b.manual(
            "rs.upgrade-server",
            &p.name,
            "Upgrade the Privilege Secure server",
            nps_setup(&p.name),
        );
        reboot(b, file, "rs.reboot-server", &p.name);
    }
    let remote = with_role(file, &[Role::Action, Role::Scheduler, Role::Proxy]);
    for n in &remote {
        let installer = match n.role {
            Role::Action => "ActionService.exe",
            Role::Scheduler => "the Scheduler service installer",
            _ => "the Proxy service installer",
        };
        b.manual(
            "rs.upgrade-host",
            &n.name,
            "Upgrade the remote service",
            format!("on {}: run {installer}; close it when it completes", n.name),
        );
    }
    let keyed = with_role(file, &[Role::Action, Role::Scheduler]);
    if !keyed.is_empty() && !keys_kept {
        b.manual(
            "rs.export-keys",
            &p.name,
            "Export the encryption keys with the vendor tool",
            export_keys(&p.name),
        );
        // Named: the HA pair's secondary has its keys already (and would be left a keys.exp).
        let mut push = vec!["keys", "push"];
        for n in &keyed {
            push.extend(["--to", n.name.as_str()]);
        }
        b.push_keys(
            "rs.push-keys",
            &p.name,
            "Copy the encryption keys to the Action and Scheduler hosts (not Proxy)",
            &push,
        );
        for n in &keyed {
            b.manual(
                "rs.import-keys",
                &n.name,
                "Import the keys with the vendor tool",
                format!(
                    "on {}, in the KeyTools folder: SbPAM.RotateKey.exe import -n keys.exp",
                    n.name
                ),
            );
        }
        for n in keyed
            .iter()
            .map(|n| n.name.as_str())
            .chain([p.name.as_str()])
        {
            b.auto(
                "rs.cleanup",
                n,
                "Delete keys.exp (and anything else a transfer left)",
                &["keys", "cleanup"],
            );
        }
    }
    b.manual(
        "rs.register",
        &p.name,
        "Re-register the services",
        format!(
            "on {}'s web UI: Configuration > System Settings > Services, click Register \
             Services; every remote host shows online under Service Nodes",
            p.name
        ),
    );
    b.auto(
        "rs.verify",
        &p.name,
        "Verify: the keys agree on every node that holds them",
        &["audit"],
    );
    Ok(())
}
