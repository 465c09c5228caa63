// Package auth decides who is calling a gateway and what they may read
// and write.
//
// It owns:
//   - principals: who is calling, from a verified client certificate (URI
//     SAN such as a SPIFFE ID, then DNS SAN, then CN, in a configurable
//     order) or a bearer token in the "authorization" metadata (static
//     tokens, stored as SHA-256 hashes in the tokens file, or JWTs such as
//     Kubernetes service-account tokens and SPIFFE JWT-SVIDs, verified
//     against a JWKS file); see Authenticator;
//   - policy: the ACL file, rules granting principals, name prefixes and
//     groups read and write on key prefixes, default deny once set; see
//     Policy and PolicyWatcher;
//   - the files behind both, re-read when they change (stat at most once
//     per poll interval), size-bounded; a file that fails to load keeps the
//     previous version in force and is reported, never half applied.
//
// Without configuration it changes nothing: no credential configured means
// every caller is the anonymous principal, and no ACL file means a nil
// *Policy, which allows everything.
//
// The gateway calls it; it never calls the gateway. What it must never do:
//   - talk to the network: keys come from the JWKS file, never from a URL
//     (whatever refreshes that file lives outside the gateway), so an
//     unreachable issuer can neither stall nor open a gateway;
//   - log, store or put into an error a token or a hash of one (errors name
//     the principal, key IDs and claims, never credentials);
//   - accept unsigned or symmetric JWTs (alg "none", HS256), or a failed
//     credential as anonymous;
//   - block: Authenticate and the policy checks do in-memory work plus, at
//     most once per poll interval, a stat of each file.
package auth
