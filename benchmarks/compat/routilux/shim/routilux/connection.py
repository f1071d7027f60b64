from ._names import trioflow

Connection = trioflow("Connection")
