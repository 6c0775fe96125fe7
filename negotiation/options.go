package negotiation

import "time"

// RequestOptions tune one Request. Zero fields take the service's defaults.
type RequestOptions struct {
	BidWindow time.Duration // how long bids are taken after each call
	Timeout   time.Duration // the whole task's deadline from now
	// ProgressTimeout fails over a contractor silent for this long.
	ProgressTimeout time.Duration
	// CommitTimeout fails over a winner that neither commits nor declines.
	CommitTimeout time.Duration
	// Calls is the retry budget: how many calls for proposals at most.
	Calls    int
	Strategy Strategy
	// EnoughBids closes the bid window early once this many bids are in;
	// zero waits for the whole window.
	EnoughBids int
	// Agent names the requesting hosted agent; "" is the default agent.
	Agent string
	// Started, if set, is called with the task ID once it is made, before
	// the first call goes out, so a caller can tie the task to its own
	// records (a workflow step) while it runs.
	Started func(taskID string)
	// Updates, if set, is told the task's state changes and progress
	// (WithUpdates).
	Updates func(Update)
}

// RequestOption changes RequestOptions.
type RequestOption func(*RequestOptions)

// WithBidWindow sets how long bids are taken after each call.
func WithBidWindow(d time.Duration) RequestOption {
	return func(o *RequestOptions) { o.BidWindow = d }
}

// WithTimeout sets the task's deadline, from now.
func WithTimeout(d time.Duration) RequestOption { return func(o *RequestOptions) { o.Timeout = d } }

// WithProgressTimeout sets how long a working contractor may be silent.
func WithProgressTimeout(d time.Duration) RequestOption {
	return func(o *RequestOptions) { o.ProgressTimeout = d }
}

// WithCommitTimeout sets how long an awarded contractor has to commit.
func WithCommitTimeout(d time.Duration) RequestOption {
	return func(o *RequestOptions) { o.CommitTimeout = d }
}

// WithCalls sets the retry budget: the most calls for proposals.
func WithCalls(n int) RequestOption { return func(o *RequestOptions) { o.Calls = n } }

// WithStrategy sets how bids are ranked.
func WithStrategy(s Strategy) RequestOption { return func(o *RequestOptions) { o.Strategy = s } }

// WithAgent names the requesting hosted agent.
func WithAgent(name string) RequestOption { return func(o *RequestOptions) { o.Agent = name } }

// WithEnoughBids closes the bid window as soon as n bids are in, for a
// requester that knows how many offers it wants to compare.
func WithEnoughBids(n int) RequestOption { return func(o *RequestOptions) { o.EnoughBids = n } }

// WithStarted calls f with the task's ID once it is made, before the first
// call for proposals goes out. f must not block.
func WithStarted(f func(taskID string)) RequestOption {
	return func(o *RequestOptions) { o.Started = f }
}
