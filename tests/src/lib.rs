pub mod _placeholder {}
