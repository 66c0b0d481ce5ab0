"""The contracts between churnwatch's processes: the documents on its topics, typed."""
