pub mod idp;
