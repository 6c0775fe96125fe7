// Package identity owns who is speaking in parley and how that is proven.
//
// It owns:
//   - ed25519 keys for nodes and agents ([GenerateKey]) and their on-disk
//     key files ([WriteKeyFile], [ReadKeyFile]: written atomically with mode
//     0600, refused when readable by group or others, as ssh does);
//   - agent identities: [AgentID], a did:key for an ed25519 public key, and
//     [Agent], a named key pair;
//   - signed envelopes: a [Message] is a versioned JSON payload sealed in a
//     go-libp2p core/record Envelope under the [Domain] signature domain
//     ([Seal], [Open], [OpenEnvelope]);
//   - the replay window ([ReplayWindow]) that refuses a (sender, message ID)
//     pair seen before, within bounded memory.
//
// It does not own transport, peer discovery, what message types mean, or
// which agents are trusted: callers decide what to do with an authenticated
// [Message]. [Open] only proves that the claimed sender signed it, that it is
// fresh, and (with a [ReplayWindow]) that it has not been seen before.
package identity
