//! The Secret Server cluster upgrade (the seed's steps, in its order): pools stopped on every
//! node, the primary upgraded and checked, the others synced, keys pushed, pools started one
//! by one and each node's site checked.

use super::*;

pub(super) fn secret_server(b: &mut Builder<'_>, file: &ClusterFile) -> Result<()> {
    let p = primary(file)?;
    let up = &file.upgrade;
    let others: Vec<&NodeSpec> = file
        .nodes
        .iter()
        .filter(|n| n.name != p.name && n.paths.contains_key("app"))
        .collect();
    let (dr, web): (Vec<&NodeSpec>, Vec<&NodeSpec>) =
        others.iter().partition(|n| n.role == Role::Dr);
    let sql = up
        .sql_instance
        .as_deref()
        .unwrap_or("<SQL Server instance>");
    let db = up.database.as_deref().unwrap_or("<database>");
    b.manual(
        "ss.backup",
        &p.name,
        "Back up the database and the application folder",
        format!(
            "back up the Secret Server database (SQL Server) and {}'s application folder; \
             keyferry keeps each other node's folder itself (keyferry sync rollback)",
            p.name
        ),
    );
    if up.mirroring && !web.is_empty() {
        let all: Vec<&str> = [p.name.as_str()]
            .into_iter()
            .chain(web.iter().map(|n| n.name.as_str()))
            .collect();
        b.manual(
            "ss.mirror-same-database",
            &p.name,
            "Point every web server at the same database",
            format!(
                "on {}: each must use the principal database {db} on {sql} (Admin > Database \
                 shows it); note which pointed at the mirror, to point them back at the end",
                all.join(", ")
            ),
        );
    }
    // "Stop all but the original Web server": keyferry stops a named pool on a node it
    // reaches (over ssh); otherwise the admin does, with the exact command.
    for n in &others {
        match (&n.app_pool, reachable(n, &p.name)) {
            (Some(_), true) => {
                b.auto(
                    "ss.stop",
                    &n.name,
                    "Stop the application pool",
                    &["host", "pool", "stop"],
                );
                b.undo(format!(
                    "keyferry host pool start -c {} --node {} (on {}); upgrade abandon starts it \
                     again itself",
                    b.cluster_arg, n.name, n.name
                ));
                let args = b.argv(&["host", "pool", "start"], Some(&n.name));
                if let Some(s) = b.steps.last_mut() {
                    s.undo_args = args;
                    s.undone_by = Some("ss.start".into());
                }
            }
            (pool, _) => b.manual(
                "ss.stop",
                &n.name,
                "Stop the application pool",
                format!(
                    "on {}: {} (\"Stop all but the original Web server\"){}",
                    n.name,
                    appcmd("stop", pool.as_deref()),
                    hint_pool(pool.as_deref())
                ),
            ),
        }
    }
    b.manual(
        "ss.upgrade-primary",
        &p.name,
        "Upgrade the primary",
        format!(
            "on {}: run the upgrade as for a single instance (the built-in web installer); \
             never overwrite or delete encryption.config",
            p.name
        ),
    );
    works(
        b,
        p,
        &p.name,
        "ss.primary-works",
        "Confirm the upgraded primary works",
    );
    if !web.is_empty() {
        // With a DR node, the web nodes first: DR gets its folder only after its database.
        let mut args = vec!["sync", "--checksum"];
        if !dr.is_empty() {
            for n in &web {
                args.extend(["--to", n.name.as_str()]);
            }
        }
        b.auto(
            "ss.sync",
            &p.name,
            "Copy the application folder (and TMS) to every other node, minus database.config \
             and encryption.config (compared by content: a file of the same size and time is \
             not taken as the same)",
            &args,
        );
        b.undo(format!(
            "keyferry sync rollback -c {} --node {} (each node's previous folder comes back)",
            b.cluster_arg, p.name
        ));
        b.gate(
            "the upgraded primary works (the step before is confirmed)",
            None,
        );
    }
    if !dr.is_empty() {
        // "Upgrading Remote DR Instances": the upgraded database goes to DR before its folder,
        // or DR runs new binaries against its old database, found only when DR is needed.
        let file_name = format!("{}-upgraded.bak", db.trim_matches(['<', '>']));
        b.manual(
            "ss.dr-backup-database",
            &p.name,
            "Back up the upgraded database for DR",
            format!(
                "on {sql}: sqlcmd -S {sql} -E -Q \"BACKUP DATABASE [{db}] TO DISK = \
                 N'{file_name}' WITH COPY_ONLY, CHECKSUM, INIT\" (PowerShell: \
                 Backup-SqlDatabase -ServerInstance '{sql}' -Database '{db}' -BackupFile \
                 '{file_name}' -CopyOnly -Checksum)"
            ),
        );
        for d in &dr {
            let dr_sql = up
                .dr_sql_instance
                .as_deref()
                .unwrap_or("<DR SQL Server instance>");
            b.manual(
                "ss.dr-copy-backup",
                &d.name,
                "Copy the database backup to the DR site",
                format!(
                    "copy {file_name} from {sql}'s backup folder to {dr_sql}'s (for {}); \
                     compare the two files' sizes",
                    d.name
                ),
            );
            b.manual(
                "ss.dr-restore-database",
                &d.name,
                "Restore the upgraded database at the DR site",
                format!(
                    "on {dr_sql}: sqlcmd -S {dr_sql} -E -Q \"RESTORE DATABASE [{db}] FROM DISK \
                     = N'{file_name}' WITH REPLACE, CHECKSUM\" (PowerShell: \
                     Restore-SqlDatabase -ServerInstance '{dr_sql}' -Database '{db}' \
                     -BackupFile '{file_name}' -ReplaceDatabase); it must end with RESTORE \
                     DATABASE successfully processed"
                ),
            );
            b.auto(
                "ss.dr-sync",
                &p.name,
                "Copy the application folder to the DR node, minus database.config and \
                 encryption.config",
                &["sync", "--checksum", "--to", &d.name],
            );
            b.undo(format!(
                "keyferry sync rollback -c {} --node {} --to {} (its previous folder comes \
                 back; its database stays the restored one)",
                b.cluster_arg, p.name, d.name
            ));
            b.gate(
                &format!(
                    "{}'s database is the restored upgraded one (the step before is confirmed)",
                    d.name
                ),
                None,
            );
        }
    }
    b.push_keys(
        "ss.keys",
        &p.name,
        "Bring every node's encryption.config to the primary's (a node whose key differs stops \
         the run and asks; replaced only once confirmed, backed up first)",
        &["keys", "push"],
    );
    // One by one: each node's pool started (DR: IIS restarted), then its site confirmed;
    // keyferry does it on a node it reaches (over ssh), the admin elsewhere.
    for n in &others {
        let here = reachable(n, &p.name);
        match (n.role, &n.app_pool, here) {
            (Role::Dr, _, true) => b.auto(
                "ss.start",
                &n.name,
                "Restart IIS on the DR node",
                &["host", "iis-restart"],
            ),
            (Role::Dr, _, false) => b.manual(
                "ss.start",
                &n.name,
                "Restart IIS on the DR node",
                format!(
                    "on {}: iisreset /restart (or keyferry host iis-restart -c {} --node {})",
                    n.name, b.cluster_arg, n.name
                ),
            ),
            (_, Some(_), true) => b.auto(
                "ss.start",
                &n.name,
                "Start the application pool",
                &["host", "pool", "start"],
            ),
            (_, pool, _) => b.manual(
                "ss.start",
                &n.name,
                "Start the application pool",
                format!(
                    "on {}: {}{}",
                    n.name,
                    appcmd("start", pool.as_deref()),
                    hint_pool(pool.as_deref())
                ),
            ),
        }
        works(b, n, &p.name, "ss.works", "Confirm the node works");
    }
    if up.mirroring {
        b.manual(
            "ss.mirror-activated",
            &p.name,
            "Check that every instance is activated",
            format!(
                "on {}'s site: Admin > Licenses; every node's licences show as activated \
                 (activate any that do not)",
                p.name
            ),
        );
        b.manual(
            "ss.mirror-replicated",
            &p.name,
            "Check that the upgrade reached the mirror database",
            format!(
                "on {sql}: sqlcmd -S {sql} -E -Q \"SELECT mirroring_state_desc FROM \
                 sys.database_mirroring WHERE database_id = DB_ID('{db}')\" shows SYNCHRONIZED"
            ),
        );
        for n in &web {
            b.manual(
                "ss.mirror-point-back",
                &n.name,
                "Point the node back at the mirror database, if it used it",
                format!(
                    "on {}: if it pointed at the mirror (secondary) database before the upgrade \
                     (noted at the start), point it back (Admin > Database, connection reset); \
                     else nothing to do",
                    n.name
                ),
            );
        }
    }
    b.auto(
        "ss.verify",
        &p.name,
        "Verify: every node's binaries and keys equal the primary's",
        &["audit"],
    );
    Ok(())
}
