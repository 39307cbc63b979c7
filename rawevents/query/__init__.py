"""Mixpanel's Query API endpoints (segmentation, property discovery) and the explorer's paged
event list, framework-free: each takes a store, the authenticated project and the parameters."""
