// Package keyspace holds the rules for config keys and selectors: what a
// valid key is, how selector prefixes are normalized, and which keys a
// selector matches. Gateways, the store and clients share these rules so a
// key that one accepts, all accept.
package keyspace
