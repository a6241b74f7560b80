//! The safe file layer: every path keyferry opens that another user could have touched goes
//! through here. Files are opened once, never through a link, checked on their handle and
//! read through a bound ([`open`]); replaced atomically with the attributes the product
//! needs ([`atomic`], [`attrs`]); removed through handles ([`shred`]). keyferry's own files
//! and folders are private ([`private`]).

pub mod atomic;
pub mod attrs;
pub mod name;
pub mod open;
pub mod private;
pub mod shred;
pub mod tree;
pub mod walk;

pub use atomic::{is_temp_name, sweep, TempFile};
pub use attrs::{AttrSource, Attrs};
pub use open::{
    id_of, open_regular, read_bounded, remove_if_present, split, stamp_of, Dir, Entry, FileStamp,
    Meta, Opened,
};
pub use private::{
    create_private_dir, create_unique_private_dir, write_new_private, write_private,
};
pub use shred::{shred_file, Removal, RemovalMethod};
pub use tree::Tree;
pub use walk::walk;
