# Run the command as the caller's uid/gid (LOCAL_USER_ID / LOCAL_GROUP_ID) so that files
# written to mounted volumes belong to the user; as root when they are not set.
COPY entrypoint.sh /usr/local/bin/zoo-entrypoint
ENTRYPOINT ["/usr/local/bin/zoo-entrypoint"]
CMD ["/bin/bash"]
