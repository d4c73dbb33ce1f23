package nic

// SlotID names an armed hardware slot. IDs start at 1; the zero value is
// invalid.
type SlotID int
