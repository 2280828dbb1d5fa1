package rueidis

// URLOptions exposes FromURL's client options to the tests.
var URLOptions = urlOptions
