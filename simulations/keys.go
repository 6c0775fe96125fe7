package simulations

import (
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/parleynet/parley/identity"
)

func nodetestKey() (crypto.PrivKey, error) { return identity.GenerateKey() }
