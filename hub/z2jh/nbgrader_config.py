# Every server in the cluster (hub/z2jh/Dockerfile installs this as the course environment's etc/jupyter config):
# the class's exchange, a ReadWriteMany volume mounted at the same path in every pod (values.yaml).
c = get_config()  # noqa: F821
c.Exchange.root = "/srv/nbgrader/exchange"
c.CourseDirectory.course_id = "efficient-llm-inference"
