package gateway_test

import (
	"time"

	"github.com/confgate/confgate/gateway"
)

func gatewayWait(d time.Duration) gateway.Config { return gateway.Config{WaitTimeout: d} }
